//! `volery start --zoo-cfg`: an operator's existing ZooKeeper configuration and myid file.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bounded, free_port, Flavor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

/// Kills the server when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn four(port: u16, word: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(word.as_bytes()).await.expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn starts_from_a_zookeeper_zoo_cfg_and_myid() {
    if Flavor::from_env() == Flavor::ZooKeeper {
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("myid"), "3\n").unwrap();
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "# a ZooKeeper 3.8 configuration, as an operator has it\n\
                 tickTime=1000\n\
                 initLimit=10\n\
                 syncLimit=5\n\
                 dataDir={}\n\
                 dataLogDir={}\n\
                 clientPort={port}\n\
                 clientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n\
                 minSessionTimeout=3000\n\
                 maxSessionTimeout=9000\n\
                 autopurge.snapRetainCount=5\n\
                 autopurge.purgeInterval=1\n\
                 4lw.commands.whitelist=ruok, conf, srvr\n\
                 metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
                 metricsProvider.httpPort=0\n\
                 extendedTypesEnabled=true\n\
                 admin.enableServer=false\n\
                 server.3=127.0.0.1:2888:3888;{port}\n",
                data.display(),
                data.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let _server = Child(
            Command::new(env!("CARGO_BIN_EXE_volery"))
                .arg("start")
                .arg("--zoo-cfg")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("spawn volery"),
        );
        let addr = format!("127.0.0.1:{port}");
        let mut client = None;
        for _ in 0..100 {
            let attempt = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(60))
                .with_fail_eagerly()
                .connect(&addr);
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let client = client.unwrap_or_else(|| {
            panic!("no session; log:\n{}", std::fs::read_to_string(&log).unwrap())
        });
        assert_eq!(
            client.session_timeout(),
            Duration::from_secs(9),
            "maxSessionTimeout bounds the negotiated timeout"
        );
        // extendedTypesEnabled=true was applied as zookeeper.extendedTypesEnabled: TTL nodes work.
        let ttl = zk::CreateMode::Persistent
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_secs(60));
        client.create("/ttl", b"x", &ttl).await.expect("TTL create");

        assert_eq!(four(port, "ruok").await, "imok");
        let conf = four(port, "conf").await;
        assert!(conf.contains(&format!("clientPort={port}\n")), "{conf}");
        assert!(conf.contains("\ntickTime=1000\n"), "{conf}");
        assert!(conf.contains("\nmaxClientCnxns=0\n"), "{conf}");
        assert!(conf.contains("\nminSessionTimeout=3000\nmaxSessionTimeout=9000\n"), "{conf}");
        assert!(conf.ends_with("\nserverId=3\n"), "myid is the server id: {conf}");
        assert_eq!(
            four(port, "mntr").await,
            "mntr is not executed because it is not in the whitelist.\n"
        );
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains("admin.enableServer"), "unknown keys are warned about: {log}");
    })
    .await
}

#[tokio::test]
async fn a_bad_value_names_the_key_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\n# comment\nclientPort=21x81\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_volery"))
        .arg("start")
        .arg("--zoo-cfg")
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run volery");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4: invalid value for clientPort",
            cfg.display()
        )),
        "{err}"
    );
}
