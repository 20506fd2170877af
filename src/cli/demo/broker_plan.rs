//! Which broker the demo uses: the one at its URL when it answers; a throwaway node of its
//! own when nothing listens at an address of this machine and RabbitMQ is installed;
//! otherwise none, with the reason.

use std::path::PathBuf;
use std::time::Duration;

use postback_relay::relay::broker;

use super::node::OwnBroker;
use crate::cli::redact_url;

/// How a broker URL answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A broker accepted the connection.
    Answers,
    /// The connection was refused: nothing listens at that address.
    NothingListens,
    /// Anything else: something listens but refused the demo, the host does not resolve or
    /// does not answer...
    Fails,
}

/// What the demo does about its broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerPlan {
    /// Use the broker at the URL.
    Use,
    /// Start a throwaway node with this `rabbitmq-server`, and use it.
    StartOwn(PathBuf),
    /// Say which command installs RabbitMQ, and stop.
    Install,
    /// Say why the broker cannot be used, and stop.
    GiveUp,
}

/// The demo's decision. A node of its own only stands in for a broker of this machine (a
/// remote one that is down is not the demo's to replace) when nothing listens at its address
/// (a broker that refuses the demo is a broker to fix, not to replace).
pub fn plan(reach: Reach, local: bool, server: Option<PathBuf>) -> BrokerPlan {
    match (reach, local, server) {
        (Reach::Answers, _, _) => BrokerPlan::Use,
        (Reach::NothingListens, true, Some(server)) => BrokerPlan::StartOwn(server),
        (Reach::NothingListens, true, None) => BrokerPlan::Install,
        (Reach::NothingListens, false, _) | (Reach::Fails, _, _) => BrokerPlan::GiveUp,
    }
}

/// The demo's connection, and the node of its own it runs on, if it started one.
pub struct Connected {
    pub conn: lapin::Connection,
    pub own: Option<OwnBroker>,
}

/// Connects to the broker at `amqp_url`, or to a node of the demo's own started in its
/// place. `None` when there is no broker to use: the reason is printed.
pub async fn connect(amqp_url: &str) -> anyhow::Result<Option<Connected>> {
    let attempt = broker::connect(amqp_url, None, "demo").await;
    let reach = match &attempt {
        Ok(_) => Reach::Answers,
        Err(_) => probe(amqp_url).await,
    };
    let shown = redact_url(amqp_url);
    match plan(reach, is_local(amqp_url), find_rabbitmq_server()) {
        BrokerPlan::Use => Ok(Some(Connected {
            conn: attempt?,
            own: None,
        })),
        BrokerPlan::StartOwn(server) => {
            println!(
                "No RabbitMQ answers at {shown}: starting a node of the demo's own \
                 (it takes a few seconds)."
            );
            let own = OwnBroker::start(&server, "").await?;
            let conn = broker::connect(&own.url, None, "demo").await?;
            Ok(Some(Connected {
                conn,
                own: Some(own),
            }))
        }
        BrokerPlan::Install => {
            eprintln!(
                "Cannot reach RabbitMQ at {shown}: nothing listens there, and RabbitMQ is \
                 not installed. Install it, and the demo starts a broker of its own:\n  \
                 sudo apt-get install -y rabbitmq-server"
            );
            Ok(None)
        }
        BrokerPlan::GiveUp => {
            // (Only a failed connection leads here.)
            let e = attempt.err().map(|e| e.to_string()).unwrap_or_default();
            eprintln!(
                "Cannot reach RabbitMQ at {shown}: {e}\n\
                 The demo starts a broker of its own only when nothing listens at an \
                 address of this machine. Check the URL (--amqp-url or AMQP_URL)."
            );
            Ok(None)
        }
    }
}

/// Whether the URL names this machine: `localhost` or a loopback address.
pub fn is_local(amqp_url: &str) -> bool {
    let Ok(uri) = amqp_url.parse::<lapin::uri::AMQPUri>() else {
        return false;
    };
    let host = uri
        .authority
        .host
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Tells "nothing listens" from other failures, once the AMQP connection has failed.
async fn probe(amqp_url: &str) -> Reach {
    let Ok(uri) = amqp_url.parse::<lapin::uri::AMQPUri>() else {
        return Reach::Fails;
    };
    let addr = (uri.authority.host.as_str(), uri.authority.port);
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reach::NothingListens,
        // It listens but refused the demo, or does not resolve, or does not answer in time.
        _ => Reach::Fails,
    }
}

/// Debian installs the real start script here, runnable by any user; `/usr/sbin` holds a
/// wrapper that switches to the `rabbitmq` user and its files.
const DEBIAN_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The installed `rabbitmq-server` start script, if any.
pub fn find_rabbitmq_server() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from(DEBIAN_SERVER).with_file_name("")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    // An ordinary user's PATH often leaves the sbin directories out.
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    find_server_in(&dirs)
}

/// The first executable `rabbitmq-server` in `dirs`, skipping Debian's wrapper (which would
/// run the node as the `rabbitmq` user, on that user's files).
pub fn find_server_in(dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    dirs.iter().map(|d| d.join("rabbitmq-server")).find(|p| {
        let executable =
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        let wrapper =
            std::fs::canonicalize(p).is_ok_and(|real| real.ends_with("rabbitmq-script-wrapper"));
        executable && !wrapper
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_plan() {
        let server = || Some(PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server"));
        // A broker that answers is used, wherever it is and whatever is installed.
        for (local, s) in [(true, server()), (false, None)] {
            assert_eq!(plan(Reach::Answers, local, s), BrokerPlan::Use);
        }
        // Nothing at a local address: start a node if RabbitMQ is installed, else say how.
        assert_eq!(
            plan(Reach::NothingListens, true, server()),
            BrokerPlan::StartOwn(server().unwrap())
        );
        assert_eq!(plan(Reach::NothingListens, true, None), BrokerPlan::Install);
        // A remote broker is not the demo's to replace, nor one that refuses the demo.
        assert_eq!(
            plan(Reach::NothingListens, false, server()),
            BrokerPlan::GiveUp
        );
        assert_eq!(plan(Reach::Fails, true, server()), BrokerPlan::GiveUp);
        assert_eq!(plan(Reach::Fails, true, None), BrokerPlan::GiveUp);
    }

    #[test]
    fn local_addresses() {
        for url in [
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqp://localhost",
            "amqp://u:p@LOCALHOST:5999/vh",
            "amqp://127.1.2.3:5672",
            "amqp://[::1]:5672/%2f",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "amqp://guest:guest@rabbit.example.com:5672/%2f",
            "amqp://10.0.0.5",
            "amqp://0.0.0.0:5672",
            "amqp://localhost.example.com",
            "not a url",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }

    #[test]
    fn finds_an_executable_server_and_skips_the_wrapper() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).unwrap();
            d
        };
        let (empty, plain, wrapped, real) =
            (dir("empty"), dir("plain"), dir("wrapped"), dir("real"));
        // A file that cannot be run does not count.
        std::fs::write(plain.join("rabbitmq-server"), "#!/bin/sh\n").unwrap();
        // Debian's wrapper, reached through a link, does not count either.
        let wrapper = wrapped.join("rabbitmq-script-wrapper");
        std::fs::write(&wrapper, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&wrapper, wrapped.join("rabbitmq-server")).unwrap();
        let script = real.join("rabbitmq-server");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        assert_eq!(find_server_in(&[empty.clone(), plain.clone()]), None);
        assert_eq!(find_server_in(std::slice::from_ref(&wrapped)), None);
        assert_eq!(
            find_server_in(&[empty, plain, wrapped, real.clone()]),
            Some(script)
        );
    }
}
