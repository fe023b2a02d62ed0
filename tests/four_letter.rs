//! Four-letter words on the client port, compared with what ZooKeeper 3.8 answers (run with
//! `VOLERY_TEST_REFERENCE=zookeeper` to check the same assertions against the reference).

mod common;

use std::collections::BTreeMap;

use common::{bounded, create_persistent, unique_path, Options, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

/// Sends `word` as a new connection's first bytes and reads the answer until the server closes.
async fn four(server: &Server, word: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    s.write_all(word.as_bytes()).await.expect("send word");
    let mut out = Vec::new();
    common::within(10, word, s.read_to_end(&mut out))
        .await
        .expect("read answer");
    String::from_utf8(out).expect("utf-8 answer")
}

/// mntr's `key\tvalue` lines.
fn mntr_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &BTreeMap<String, String>, key: &str) -> i64 {
    m.get(key)
        .unwrap_or_else(|| panic!("mntr has no {key}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not an integer: {:?}", m[key]))
}

/// The keys ZooKeeper 3.8's mntr always reports (standalone), which monitoring tools read.
const MNTR_KEYS: &[&str] = &[
    "zk_version",
    "zk_server_state",
    "zk_avg_latency",
    "zk_max_latency",
    "zk_min_latency",
    "zk_packets_received",
    "zk_packets_sent",
    "zk_num_alive_connections",
    "zk_outstanding_requests",
    "zk_znode_count",
    "zk_watch_count",
    "zk_ephemerals_count",
    "zk_approximate_data_size",
    "zk_open_file_descriptor_count",
    "zk_max_file_descriptor_count",
    "zk_global_sessions",
    "zk_uptime",
    "zk_auth_failed_count",
    "zk_last_client_response_size",
    "zk_max_client_response_size",
    "zk_min_client_response_size",
    "zk_avg_fsynctime",
    "zk_cnt_fsynctime",
    "zk_p99_readlatency",
    "zk_p99_updatelatency",
];

fn all_words() -> Options {
    Options {
        four_letter_whitelist: Some("*".to_string()),
        ..Options::default()
    }
}

#[tokio::test]
async fn ruok_isro_and_the_reset_words() {
    bounded(async {
        let server = Server::start_with(all_words()).await;
        assert_eq!(four(&server, "ruok").await, "imok");
        assert_eq!(four(&server, "isro").await, "rw");
        assert_eq!(four(&server, "crst").await, "Connection stats reset.\n");
        assert_eq!(four(&server, "srst").await, "Server stats reset.\n");
        // srst zeroed the counters: this srvr is one of very few packets since.
        let srvr = four(&server, "srvr").await;
        let received: u64 = srvr
            .lines()
            .find_map(|l| l.strip_prefix("Received: "))
            .expect("Received line")
            .parse()
            .expect("a count");
        assert!(received <= 3, "{srvr}");
        assert_eq!(four(&server, "gtmk").await, "306");
    })
    .await
}

#[tokio::test]
async fn srvr_stat_cons_and_conf() {
    bounded(async {
        let server = Server::start_with(all_words()).await;
        let client = server.client().await;
        let path = unique_path("4lw");
        create_persistent(&client, &path, b"x").await;

        let srvr = four(&server, "srvr").await;
        let lines: Vec<&str> = srvr.lines().collect();
        assert!(lines[0].starts_with("Zookeeper version: 3.8."), "{srvr}");
        let labels: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            labels,
            [
                "Latency min/avg/max",
                "Received",
                "Sent",
                "Connections",
                "Outstanding",
                "Zxid",
                "Mode",
                "Node count"
            ],
            "{srvr}"
        );
        assert!(srvr.contains("\nMode: standalone\n"), "{srvr}");
        assert!(srvr.contains("\nConnections: 2\n"), "{srvr}");
        assert!(srvr.contains("\nNode count: 6\n"), "{srvr}");
        assert!(srvr.ends_with('\n'));

        let stat = four(&server, "stat").await;
        assert!(stat.contains("\nClients:\n /127.0.0.1:"), "{stat}");
        assert!(stat.contains("(queued=0,recved="), "{stat}");
        assert!(stat.contains("\nNode count: 6\n"), "{stat}");

        let sid = format!("sid=0x{:x},", client.session_id().0);
        let cons = four(&server, "cons").await;
        let line = cons
            .lines()
            .find(|l| l.contains(&sid))
            .unwrap_or_else(|| panic!("no {sid} in {cons}"));
        assert!(line.starts_with(" /127.0.0.1:"), "{line}");
        for field in [
            ",lop=",
            ",est=",
            ",to=",
            ",lcxid=0x",
            ",lzxid=0x",
            ",lresp=",
            ",llat=",
            ",minlat=",
            ",avglat=",
            ",maxlat=",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
        assert!(cons.ends_with(")\n\n"), "{cons:?}");

        let conf = four(&server, "conf").await;
        let keys: Vec<&str> = conf.lines().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "clientPort",
                "secureClientPort",
                "dataDir",
                "dataDirSize",
                "dataLogDir",
                "dataLogSize",
                "tickTime",
                "maxClientCnxns",
                "minSessionTimeout",
                "maxSessionTimeout",
                "clientPortListenBacklog",
                "serverId"
            ]
        );
        assert!(
            conf.contains(&format!("clientPort={}\n", server.port())),
            "{conf}"
        );
        assert!(conf.contains("\ntickTime=2000\n"), "{conf}");
        assert!(
            conf.contains("\nminSessionTimeout=4000\nmaxSessionTimeout=40000\n"),
            "{conf}"
        );

        let envi = four(&server, "envi").await;
        assert!(
            envi.starts_with("Environment:\nzookeeper.version=3.8."),
            "{envi}"
        );
        assert!(envi.contains("\nos.name=Linux\n"), "{envi}");
    })
    .await
}

#[tokio::test]
async fn mntr_keys_are_zookeepers_and_values_move() {
    bounded(async {
        let server = Server::start_with(all_words()).await;
        let before = mntr_map(&four(&server, "mntr").await);
        for key in MNTR_KEYS {
            assert!(before.contains_key(*key), "mntr lacks {key}: {before:?}");
        }
        assert_eq!(before["zk_server_state"], "standalone");
        assert!(before["zk_version"].starts_with("3.8."));
        assert!(
            before["zk_avg_latency"].contains('.'),
            "Java prints a double"
        );
        assert!(num(&before, "zk_open_file_descriptor_count") > 0);
        assert!(num(&before, "zk_max_file_descriptor_count") > 0);

        let client = server.client().await;
        let path = unique_path("mntr");
        create_persistent(&client, &path, b"abc").await;
        let eph = format!("{path}/e");
        client
            .create(
                &eph,
                b"z",
                &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .expect("create ephemeral");
        let (_, _, _watch) = client.get_and_watch_data(&path).await.expect("watch");

        let after = mntr_map(&four(&server, "mntr").await);
        assert_eq!(
            num(&after, "zk_znode_count"),
            num(&before, "zk_znode_count") + 2
        );
        assert_eq!(num(&after, "zk_ephemerals_count"), 1);
        assert_eq!(num(&after, "zk_watch_count"), 1);
        assert_eq!(num(&after, "zk_global_sessions"), 1);
        assert_eq!(num(&after, "zk_num_alive_connections"), 2);
        assert_eq!(
            num(&after, "zk_approximate_data_size"),
            num(&before, "zk_approximate_data_size")
                + (path.len() + 3) as i64
                + (eph.len() + 1) as i64
        );
        assert!(num(&after, "zk_packets_received") >= num(&before, "zk_packets_received") + 4);
        assert!(num(&after, "zk_packets_sent") >= num(&before, "zk_packets_sent") + 4);
        assert!(num(&after, "zk_max_client_response_size") > 0);
        assert_eq!(num(&after, "zk_outstanding_requests"), 0);
    })
    .await
}

#[tokio::test]
async fn watches_and_dump() {
    bounded(async {
        let server = Server::start_with(all_words()).await;
        let client = server.client().await;
        let path = unique_path("wch");
        create_persistent(&client, &path, b"").await;
        let eph = format!("{path}/e");
        client
            .create(
                &eph,
                b"",
                &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .expect("create ephemeral");
        let (_, _, _w1) = client.get_and_watch_data(&path).await.expect("watch");
        let (_, _, _w2) = client.get_and_watch_data(&eph).await.expect("watch");
        let sid = format!("0x{:x}", client.session_id().0);

        assert_eq!(
            four(&server, "wchs").await,
            "1 connections watching 2 paths\nTotal watches:2\n"
        );
        let mut paths = [path.clone(), eph.clone()];
        paths.sort();
        // ZooKeeper lists a session's paths in hash order; Volery sorts them.
        let wchc = four(&server, "wchc").await;
        let mut lines: Vec<&str> = wchc.lines().collect();
        lines[1..3].sort();
        assert_eq!(
            lines,
            [
                sid.as_str(),
                &format!("\t{}", paths[0]),
                &format!("\t{}", paths[1]),
                ""
            ]
        );
        assert!(wchc.ends_with("\n\n"), "{wchc:?}");
        let wchp = four(&server, "wchp").await;
        for p in &paths {
            assert!(wchp.contains(&format!("{p}\n\t{sid}\n")), "{wchp}");
        }
        assert!(wchp.ends_with("\n\n"));

        let dump = four(&server, "dump").await;
        assert!(
            dump.starts_with("SessionTracker dump:\nSession Sets ("),
            "{dump}"
        );
        assert!(dump.contains(&format!("\t{sid}\n")), "{dump}");
        assert!(
            dump.contains(&format!(
                "ephemeral nodes dump:\nSessions with Ephemerals (1):\n{sid}:\n\t{eph}\n"
            )),
            "{dump}"
        );
        assert!(
            dump.contains("Connections dump:\nConnections Sets ("),
            "{dump}"
        );
        assert!(dump.contains(&format!("sessionId: {sid}\n")), "{dump}");
        assert!(dump.contains(" expire at "), "{dump}");
    })
    .await
}

#[tokio::test]
async fn only_whitelisted_words_run() {
    bounded(async {
        let server = Server::start_with(Options {
            four_letter_whitelist: Some("ruok, conf".to_string()),
            ..Options::default()
        })
        .await;
        assert_eq!(four(&server, "ruok").await, "imok");
        assert!(four(&server, "conf").await.starts_with("clientPort="));
        assert!(
            four(&server, "srvr")
                .await
                .starts_with("Zookeeper version: "),
            "srvr is always on"
        );
        for word in ["mntr", "stat", "dump", "wchc", "envi", "isro"] {
            assert_eq!(
                four(&server, word).await,
                format!("{word} is not executed because it is not in the whitelist.\n")
            );
        }
        // The server is unharmed and still serves sessions.
        let client = server.client().await;
        client.get_data("/").await.expect("getData /");
    })
    .await
}

#[tokio::test]
async fn default_whitelist_is_srvr_only() {
    bounded(async {
        let server = Server::start().await;
        assert!(four(&server, "srvr").await.contains("Mode: standalone"));
        assert_eq!(
            four(&server, "ruok").await,
            "ruok is not executed because it is not in the whitelist.\n"
        );
    })
    .await
}
