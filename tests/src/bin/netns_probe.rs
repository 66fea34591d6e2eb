//! A TCP listener and client for the interception tests, run inside a pod's namespace.
//!
//! `netns_probe listen ADDR LABEL`: prints `listening` once bound, then answers each
//! connection with one line: `LABEL original=ADDR` when the connection was redirected
//! there (ADDR is where it was going, from SO_ORIGINAL_DST), else `LABEL direct`.
//!
//! `netns_probe connect ADDR`: connects, prints the line it was answered with, and exits
//! 0; prints why and exits 1 if it could not connect.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["listen", addr, label] => listen(addr, label),
        ["connect", addr] => connect(addr),
        _ => {
            eprintln!("usage: netns_probe listen ADDR LABEL | connect ADDR");
            ExitCode::from(2)
        }
    }
}

fn listen(addr: &str, label: &str) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // The kernel answers SO_ORIGINAL_DST for any connection it tracks, redirected
        // or not; only an answer other than the local address means a redirect.
        let original = socket2::SockRef::from(&stream)
            .original_dst_v4()
            .ok()
            .and_then(|a| a.as_socket());
        let answer = match original {
            Some(original) if Some(original) != stream.local_addr().ok() => {
                format!("{label} original={original}")
            }
            _ => format!("{label} direct"),
        };
        let _ = writeln!(stream, "{answer}");
    }
    ExitCode::SUCCESS
}

fn connect(addr: &str) -> ExitCode {
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bad address {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    // Only bounds a hang when a packet is dropped; the tests never expect a timeout.
    let limit = Duration::from_secs(10);
    let stream = match TcpStream::connect_timeout(&addr, limit) {
        Ok(stream) => stream,
        Err(e) => {
            println!("failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(limit));
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(_) => {
            println!("{}", line.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("failed: no answer: {e}");
            ExitCode::FAILURE
        }
    }
}
