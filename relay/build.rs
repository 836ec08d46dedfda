//! Builds the XDP fast path's eBPF object (`bpf/channel_xdp.c`) with clang, when clang is
//! there: the relay then embeds it and `--xdp IFACE` can attach it. Without clang (or with
//! `NEXRTC_NO_XDP=1`) the relay builds and runs without the fast path, and says so when
//! `--xdp` is asked for. `CLANG` names another clang.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(nexrtc_xdp)");
    println!("cargo:rerun-if-changed=bpf/channel_xdp.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=NEXRTC_NO_XDP");
    if std::env::var_os("NEXRTC_NO_XDP").is_some_and(|v| v == "1") {
        return;
    }
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("channel_xdp.o");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "",
    };
    let built = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", "bpf/channel_xdp.c", "-o"])
        .arg(&out)
        .output();
    match built {
        Ok(o) if o.status.success() => println!("cargo:rustc-cfg=nexrtc_xdp"),
        Ok(o) => println!(
            "cargo:warning=the XDP fast path is not built: {clang} failed: {}",
            String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("")
        ),
        Err(e) => println!(
            "cargo:warning=the XDP fast path is not built: no {clang} ({e}); install clang and libbpf-dev for it"
        ),
    }
}
