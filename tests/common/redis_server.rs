//! A real `redis-server` on a loopback port for `[cluster]` tests: started
//! with a fixed port and data directory so it can be stopped, paused and
//! started again on the same data; killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Without persistence.
    pub async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// With an append-only file synced on every write (what the README
    /// asks for grants): a restart on the same directory keeps the data.
    pub async fn start_persistent() -> Redis {
        Redis::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .await
    }

    /// With these `redis-server` arguments after the defaults (no
    /// persistence; later arguments win). Port, bind and dir are set here;
    /// with `--tls-port`, write `PORT` for the chosen port (the plain port
    /// is then closed).
    pub async fn start_with(args: &[&str]) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis {
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.restart().await;
        r
    }

    /// (Re)starts the server on the same port and directory and waits
    /// until it answers.
    pub async fn restart(&mut self) {
        let tls = self.args.iter().any(|a| a == "--tls-port");
        let port = self.port.to_string();
        let plain_port = if tls { "0" } else { port.as_str() };
        let args = self.args.iter().map(|a| {
            if a == "PORT" {
                port.as_str()
            } else {
                a.as_str()
            }
        });
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", plain_port])
            .arg("--dir")
            .arg(self.dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; .ci/run does)");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): connections stay open and
    /// nothing answers, as with a hung or partitioned server.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sig = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A direct connection for inspecting what the gateways stored.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.conn_as(None).await
    }

    /// A direct connection with this password (`requirepass` servers).
    pub async fn conn_as(&self, password: Option<&str>) -> redis::aio::MultiplexedConnection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a paused (stopped) server too.
        self.kill();
    }
}
