//! A UDP echo inside a lab namespace: every datagram goes back to its sender. For
//! measuring RTTs (`rtt.rs`) and for tests that need a peer somewhere in the lab.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{in_ns, LabError, Ns};

/// Longest an echo runs if nobody stops it.
const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// A running echo (stops when [`Echo::stop`]ped or dropped).
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<SocketAddr>>>,
}

impl Echo {
    /// Binds `addr` in `ns` and echoes from a thread of its own.
    pub fn start(ns: &Ns, addr: SocketAddr) -> Result<Echo, LabError> {
        let io = |e: std::io::Error| LabError::Io {
            what: format!("echo on {addr}"),
            source: e,
        };
        let socket = in_ns(ns, move || UdpSocket::bind(addr))?.map_err(io)?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + MAX_LIFETIME;
            let mut senders = Vec::new();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    senders.push(from);
                    let _ = socket.send_to(&buf[..len], from);
                }
            }
            senders
        });
        Ok(Echo {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops it: the senders of every datagram it echoed, in order.
    pub fn stop(mut self) -> Vec<SocketAddr> {
        self.finish()
    }

    fn finish(&mut self) -> Vec<SocketAddr> {
        self.stop.store(true, Ordering::Relaxed);
        (self.thread.take())
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.finish();
    }
}
