//! `streamsocket-certs`: generates a local CA and a server certificate for StreamSocket.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Generate StreamSocket certificates: a local certificate authority (once) and a server
/// certificate signed by it, valid for localhost, 127.0.0.1, ::1 and every --host given.
///
/// Run it again to issue a new server certificate (for instance with another --host); the
/// existing CA is kept, so viewers that already trust ca.pem keep working.
/// Give viewers ca.pem (never ca.key or server.key), or the fingerprint printed below.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory for ca.pem, ca.key, server.pem and server.key.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// Extra DNS name or IP address the server certificate is valid for (repeatable).
    #[arg(long = "host", value_name = "NAME|IP")]
    hosts: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match streamsocket_certs::generate(&args.dir, &args.hosts) {
        Ok(g) => {
            if g.new_ca {
                println!("new CA:             {}", g.paths.ca_cert().display());
            } else {
                println!("kept CA:            {}", g.paths.ca_cert().display());
            }
            println!("server certificate: {}", g.paths.server_cert().display());
            println!("valid for:          {}", g.hosts.join(", "));
            println!("valid until:        {}", g.not_after.date());
            println!("fingerprint:        {}", g.fingerprint);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
