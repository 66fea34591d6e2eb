//! The programs Outrigger is measured against, from Debian's packages, each run as one
//! process per side with its own config in a temporary directory: nginx as the upstream
//! (1 KiB answers), and the same two hops as Outrigger's through HAProxy and through
//! nginx, with mutual TLS between the two sides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use outrigger_tests::{Process, free_port, loopback};

/// One running program, stopped on drop.
pub(crate) struct Peer {
    pub(crate) process: Process,
    pub(crate) addr: SocketAddr,
}

/// Certificates for the hop between the two sides: a CA, a server and a client
/// certificate, written as PEM files in `dir`.
pub(crate) struct HopCerts {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
    /// Certificate and key in one file, as HAProxy reads them.
    pub(crate) server_bundle: PathBuf,
    pub(crate) client_bundle: PathBuf,
}

impl HopCerts {
    pub(crate) fn write(dir: &Path) -> HopCerts {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        // Every certificate names itself: a leaf whose subject equals its issuer's would
        // read as self-signed.
        let named = |params: &mut CertificateParams, name: &str| {
            params.distinguished_name.push(DnType::CommonName, name);
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(1);
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        named(&mut ca_params, "meshbench hop CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA");
        let leaf = |name: &str| {
            let mut params =
                CertificateParams::new(vec![name.to_string(), "127.0.0.1".into()]).expect("params");
            named(&mut params, name);
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("leaf");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("inbound.bench");
        let (client_cert, client_key) = leaf("outbound.bench");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        HopCerts {
            ca: write("ca.pem", &ca.pem()),
            server_bundle: write("server-bundle.pem", &format!("{server_cert}{server_key}")),
            client_bundle: write("client-bundle.pem", &format!("{client_cert}{client_key}")),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}

/// nginx answering every request with 1 KiB: the upstream of every topology.
pub(crate) fn nginx_upstream(nginx: &Path, dir: &Path) -> Peer {
    let no_wrapper: &[String] = &[];
    let addr = loopback(free_port());
    let body = "x".repeat(1024);
    let server = format!(
        "server {{ listen {addr}; keepalive_requests 1000000; access_log off;\n\
         location / {{ default_type text/plain; return 200 '{body}'; }} }}"
    );
    start_nginx(no_wrapper, nginx, dir, "upstream", &server, addr)
}

/// A program to run a side under (`valgrind --tool=callgrind ...`), per side; empty for
/// none.
#[derive(Clone, Copy, Default)]
pub(crate) struct Wrappers<'a> {
    pub(crate) outbound: &'a [String],
    pub(crate) inbound: &'a [String],
}

/// The nginx pair: outbound (plain HTTP in, HTTPS with a client certificate out, kept
/// alive) and inbound (HTTPS requiring a client certificate in, plain HTTP to the
/// upstream, kept alive).
pub(crate) fn nginx_pair(
    nginx: &Path,
    dir: &Path,
    certs: &HopCerts,
    upstream: SocketAddr,
    wrappers: Wrappers<'_>,
) -> (Peer, Peer) {
    let inbound_addr = loopback(free_port());
    let inbound = format!(
        "upstream app {{ server {upstream}; keepalive 32; }}\n\
         server {{ listen {inbound_addr} ssl; access_log off; keepalive_requests 1000000;\n\
         ssl_certificate {}; ssl_certificate_key {};\n\
         ssl_client_certificate {}; ssl_verify_client on;\n\
         location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca.display()
    );
    let inbound = start_nginx(
        wrappers.inbound,
        nginx,
        dir,
        "nginx-inbound",
        &inbound,
        inbound_addr,
    );
    let outbound_addr = loopback(free_port());
    let outbound = format!(
        "upstream peer {{ server {inbound_addr}; keepalive 32; }}\n\
         server {{ listen {outbound_addr}; access_log off; keepalive_requests 1000000;\n\
         location / {{ proxy_pass https://peer; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
         proxy_ssl_certificate {}; proxy_ssl_certificate_key {};\n\
         proxy_ssl_trusted_certificate {}; proxy_ssl_verify on; proxy_ssl_name inbound.bench;\n\
         proxy_ssl_session_reuse on; }} }}",
        certs.client_cert.display(),
        certs.client_key.display(),
        certs.ca.display()
    );
    let outbound = start_nginx(
        wrappers.outbound,
        nginx,
        dir,
        "nginx-outbound",
        &outbound,
        outbound_addr,
    );
    (outbound, inbound)
}

/// One nginx master process (no workers: one process, like a sidecar's one thread),
/// in the foreground, with `server` as its only http server.
fn start_nginx(
    wrapper: &[String],
    nginx: &Path,
    dir: &Path,
    name: &str,
    server: &str,
    addr: SocketAddr,
) -> Peer {
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
    let config = format!(
        "daemon off; master_process off; worker_processes 1; pid {pid};\n\
         error_log {log} warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ {temp}\n{server} }}\n",
        pid = prefix.join("nginx.pid").display(),
        log = prefix.join("logs/error.log").display(),
        temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|t| format!("{t}_temp_path {};", prefix.join(t).display()))
            .join(" "),
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, config).expect("nginx.conf");
    let mut command = wrapped(wrapper, nginx);
    command.arg("-p").arg(&prefix).arg("-c").arg(&path);
    let process = Process::spawn(name, command, dir);
    Peer { process, addr }
}

/// The HAProxy pair: outbound (HTTP in, HTTP/2 over TLS with a client certificate out)
/// and inbound (HTTP/2 over TLS requiring a client certificate in, HTTP/1.1 to the
/// upstream), with connection reuse on both sides.
pub(crate) fn haproxy_pair(
    haproxy: &Path,
    dir: &Path,
    certs: &HopCerts,
    upstream: SocketAddr,
    wrappers: Wrappers<'_>,
) -> (Peer, Peer) {
    let inbound_addr = loopback(free_port());
    let inbound = format!(
        "frontend inbound\n  bind {inbound_addr} ssl crt {} ca-file {} verify required alpn h2,http/1.1\n  default_backend app\n\
         backend app\n  http-reuse always\n  server app {upstream}\n",
        certs.server_bundle.display(),
        certs.ca.display()
    );
    let inbound = start_haproxy(
        wrappers.inbound,
        haproxy,
        dir,
        "haproxy-inbound",
        &inbound,
        inbound_addr,
    );
    let outbound_addr = loopback(free_port());
    let outbound = format!(
        "frontend outbound\n  bind {outbound_addr}\n  default_backend peer\n\
         backend peer\n  http-reuse always\n  server peer {inbound_addr} ssl crt {} ca-file {} verify required verifyhost inbound.bench alpn h2\n",
        certs.client_bundle.display(),
        certs.ca.display()
    );
    let outbound = start_haproxy(
        wrappers.outbound,
        haproxy,
        dir,
        "haproxy-outbound",
        &outbound,
        outbound_addr,
    );
    (outbound, inbound)
}

fn start_haproxy(
    wrapper: &[String],
    haproxy: &Path,
    dir: &Path,
    name: &str,
    proxies: &str,
    addr: SocketAddr,
) -> Peer {
    let config = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         {proxies}"
    );
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, config).expect("haproxy config");
    let mut command = wrapped(wrapper, haproxy);
    command.arg("-db").arg("-f").arg(&path);
    let process = Process::spawn(name, command, dir);
    Peer { process, addr }
}

/// `program` run by `wrapper` (its path appended to the wrapper's arguments), or alone.
fn wrapped(wrapper: &[String], program: &Path) -> Command {
    match wrapper.split_first() {
        Some((first, args)) => {
            let mut command = Command::new(first);
            command.args(args).arg(program);
            command
        }
        None => Command::new(program),
    }
}
