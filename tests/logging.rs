//! A server whose stderr nobody drains (a pipe to a stuck supervisor or log shipper) keeps serving:
//! log lines beyond the writer's buffer are dropped, and no request waits for a log write.
//!
//! Volery only: the test returns at once under `VOLERY_TEST_REFERENCE=zookeeper`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::raw::{self, err, op, RawConn};
use common::{bounded, free_port, within, Flavor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections with garbage instead of a ConnectRequest: each is closed and logged at info
/// (about 150 bytes), so this many write several times a pipe's 64 KiB.
const BAD_CONNECTIONS: usize = 2000;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undrained_stderr_does_not_stop_the_server() {
    if Flavor::from_env() == Flavor::ZooKeeper {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // stderr is a pipe this test holds and never reads.
    let _server = Killed(
        Command::new(env!("CARGO_BIN_EXE_volery"))
            .args(["start", "--port", &port.to_string(), "--metrics-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("VOLERY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn volery"),
    );
    bounded(async {
        within(60, "the server accepts connections", async {
            while TcpStream::connect(&addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        within(60, "the server closes every bad connection", async {
            for _ in 0..BAD_CONNECTIONS {
                let mut s = TcpStream::connect(&addr).await.expect("connect");
                // A frame length far above jute.maxbuffer.
                s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
                    .await
                    .expect("write");
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            }
        })
        .await;
        within(20, "a session is served after the log pipe filled", async {
            let mut conn = RawConn::connect(&addr, 30_000).await;
            let reply = conn
                .request(op::CREATE, &raw::create_body("/after-logs", b"x", 0))
                .await;
            assert_eq!(reply.err, err::OK);
        })
        .await;
    })
    .await;
}
