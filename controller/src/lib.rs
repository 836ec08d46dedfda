//! NexRTC controller.
//!
//! For now only the state layer: [`store`] (the `Store` trait, its embedded and etcd
//! implementations, and [`store::WatchedMap`], the in-memory snapshot the request path reads).

pub mod store;
