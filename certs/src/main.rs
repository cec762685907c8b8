//! `streamsocket-certs`: StreamSocket's certificates: a local CA, the server's certificate,
//! viewers' certificates for mutual TLS; their validity, renewal and revocation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use streamsocket_certs::{format_time, CertKind, Lifetime, Validity};

/// Generate and look after StreamSocket certificates.
///
/// Without a command it issues a server certificate, signed by the local CA in --dir (created
/// the first time), valid for localhost, 127.0.0.1, ::1 and every --host given. Run it again
/// to issue a new server certificate; the CA is kept, so viewers that trust ca.pem keep
/// working. A running server picks up a new certificate by itself within seconds.
///
/// Give viewers ca.pem (never ca.key or server.key), or the fingerprint printed below.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Directory for ca.pem, ca.key, server.pem, server.key and viewers/.
    #[arg(long, default_value = "certs", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Issue a server certificate (the default command).
    Server(ServerArgs),
    /// Issue a certificate for one viewer, for servers started with --require-viewer-cert.
    ///
    /// Writes viewers/NAME.pem and viewers/NAME.key; give both to that viewer, who passes them
    /// with --cert and --key. The server logs the name when the viewer joins.
    Viewer {
        /// The viewer's name: letters, digits, '.', '_' or '-'.
        name: String,
        /// How many days the certificate is valid.
        #[arg(long, default_value_t = streamsocket_certs::VIEWER_VALIDITY_DAYS, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
    },
    /// Revoke a viewer's certificate: the server refuses it from then on (it rereads the list
    /// by itself within seconds).
    Revoke {
        /// The viewer's name, as given to `viewer`.
        name: String,
    },
    /// Show every certificate in --dir: what it is for, its names, validity and fingerprint.
    ///
    /// Exits with status 1 when one has expired or is not valid yet, 0 otherwise (a
    /// certificate that expires soon is a warning).
    Status,
    /// Renew the certificates that are due, keeping their names and lifetimes: those with less
    /// than --within-days left (or less than a third of their lifetime, when that is
    /// shorter), expired or not yet valid. The CA keeps its key, so what it signed stays
    /// valid.
    Renew {
        /// Renew what has fewer than this many days left.
        #[arg(long, default_value_t = streamsocket_certs::RENEW_WITHIN_DAYS, value_parser = clap::value_parser!(i64).range(0..=3650))]
        within_days: i64,
        /// Renew every certificate, due or not.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Extra DNS name or IP address the server certificate is valid for (repeatable).
    #[arg(long = "host", value_name = "NAME|IP")]
    hosts: Vec<String>,
    /// How many days the server certificate is valid [default: 365].
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=3650))]
    days: Option<i64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_some() && (!cli.server.hosts.is_empty() || cli.server.days.is_some()) {
        eprintln!("error: --host and --days before a command belong to the server command: streamsocket-certs server --host …");
        return ExitCode::from(2);
    }
    let result = match cli.command.unwrap_or(Command::Server(cli.server)) {
        Command::Server(args) => server(&cli.dir, args),
        Command::Viewer { name, days } => viewer(&cli.dir, &name, days),
        Command::Revoke { name } => revoke(&cli.dir, &name),
        Command::Status => status(&cli.dir),
        Command::Renew { within_days, force } => renew(&cli.dir, within_days, force),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Outcome = Result<ExitCode, streamsocket_certs::CertError>;

fn server(dir: &std::path::Path, args: ServerArgs) -> Outcome {
    let g = streamsocket_certs::issue_server(
        dir,
        &args.hosts,
        Lifetime::days_from_now(
            args.days
                .unwrap_or(streamsocket_certs::SERVER_VALIDITY_DAYS),
        ),
    )?;
    if g.new_ca {
        println!("new CA:             {}", g.paths.ca_cert().display());
    } else {
        println!("kept CA:            {}", g.paths.ca_cert().display());
    }
    println!("server certificate: {}", g.paths.server_cert().display());
    println!("valid for:          {}", g.hosts.join(", "));
    println!("valid from:         {}", format_time(g.not_before));
    println!("valid until:        {}", format_time(g.not_after));
    println!("fingerprint:        {}", g.fingerprint);
    Ok(ExitCode::SUCCESS)
}

fn viewer(dir: &std::path::Path, name: &str, days: i64) -> Outcome {
    let v = streamsocket_certs::issue_viewer(dir, name, Lifetime::days_from_now(days))?;
    println!("viewer certificate: {}", v.cert.display());
    println!("viewer key:         {}", v.key.display());
    println!("valid until:        {}", format_time(v.not_after));
    println!("fingerprint:        {}", v.fingerprint);
    println!(
        "give both files to {name}, who runs: streamsocket-client <server> --cert {} --key {}",
        v.cert.display(),
        v.key.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn revoke(dir: &std::path::Path, name: &str) -> Outcome {
    let count = streamsocket_certs::revoke_viewer(dir, name)?;
    let paths = streamsocket_certs::CertPaths::new(dir);
    println!(
        "revoked {name}; {} now lists {count} certificate{}",
        paths.crl().display(),
        if count == 1 { "" } else { "s" }
    );
    println!("a server using this directory rereads the list within seconds; elsewhere, copy it to the server's certificate directory");
    Ok(ExitCode::SUCCESS)
}

fn status(dir: &std::path::Path) -> Outcome {
    let all = streamsocket_certs::status(dir)?;
    if all.is_empty() {
        println!(
            "no certificates in {} (create them with `streamsocket-certs --dir {}`)",
            dir.display(),
            dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let revoked = streamsocket_certs::revoked_serials(dir)?;
    let now = time::OffsetDateTime::now_utc();
    let window = time::Duration::days(streamsocket_certs::RENEW_WITHIN_DAYS);
    let mut invalid = false;
    for (path, info) in all {
        let validity = info.validity_now();
        let is_revoked = info.kind == CertKind::Viewer && revoked.contains(&info.serial);
        let note = match validity {
            _ if is_revoked => " [REVOKED]",
            Validity::Valid { .. } if info.renewal_due(now, window) => {
                " [due for renewal: streamsocket-certs renew]"
            }
            Validity::Valid { .. } => "",
            _ => {
                invalid = true;
                " [run: streamsocket-certs renew]"
            }
        };
        println!("{}", path.display());
        println!("  {:<13}{} ({})", "what:", info.kind, info.common_name);
        if !info.names.is_empty() {
            println!("  {:<13}{}", "valid for:", info.names.join(", "));
        }
        println!("  {:<13}{}", "from:", format_time(info.not_before));
        println!("  {:<13}{validity}{note}", "validity:");
        println!("  {:<13}{}", "fingerprint:", info.fingerprint);
    }
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn renew(dir: &std::path::Path, within_days: i64, force: bool) -> Outcome {
    let renewals = streamsocket_certs::renew(dir, time::Duration::days(within_days), force)?;
    let mut any = false;
    for r in &renewals {
        match r.renewed {
            Some(new) => {
                any = true;
                println!("renewed {} ({}): {new}", r.path.display(), r.kind);
                println!("  was:         {}", r.was);
                println!("  fingerprint: {}", r.fingerprint);
                if r.kind == CertKind::Ca {
                    println!("  give viewers the new ca.pem before the old one expires");
                }
            }
            None if r.revoked => println!("left {} (revoked viewer)", r.path.display()),
            None => println!("kept {} ({}): {}", r.path.display(), r.kind, r.was),
        }
    }
    if !any {
        println!("nothing to renew: every certificate has more than {within_days} days left (or a third of its lifetime)");
    }
    Ok(ExitCode::SUCCESS)
}
