//! Links planted in the store by another writer (or an attacker with access to the tree) never
//! redirect a write, a truncation or a repair outside the root, even when Janus runs as root.

mod support;

use std::os::unix::fs::symlink;

use support::guarded::Guarded;
use support::{raw_client, temp_dir};

fn push_body(namespace: &str) -> String {
    format!(
        r#"{{"streams":[{{"stream":{{"namespace":"{namespace}","pod":"p","container":"c"}},"values":[["1704067200000000000","hello"]]}}]}}"#
    )
}

async fn push(janus: &Guarded, namespace: &str) -> u16 {
    raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("Content-Type", "application/json")
        .body(push_body(namespace))
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_never_follow_planted_links() {
    let base = temp_dir("links");
    let (store, outside) = (base.join("store"), base.join("outside"));
    std::fs::create_dir_all(store.join("pod")).expect("mkdir");
    std::fs::create_dir_all(outside.join("ns")).expect("mkdir");
    std::fs::write(outside.join("victim"), "keep\n").expect("write");

    // A namespace directory that is a link to elsewhere.
    symlink(outside.join("ns"), store.join("pod/evil")).expect("link");
    // A marker that is a link to a file to truncate.
    std::fs::create_dir_all(store.join(".janus/writing/pod/good")).expect("mkdir");
    symlink(
        outside.join("victim"),
        store.join(".janus/writing/pod/good/2024-01-01_00.log"),
    )
    .expect("link");
    // A marked hour file (as if a crash left it) that is a link to a file with a torn tail.
    std::fs::write(outside.join("torn"), "whole line\nhalf a li").expect("write");
    std::fs::create_dir_all(store.join("pod/crashed")).expect("mkdir");
    symlink(
        outside.join("torn"),
        store.join("pod/crashed/2024-01-01_00.log"),
    )
    .expect("link");
    std::fs::create_dir_all(store.join(".janus/writing/pod/crashed")).expect("mkdir");
    std::fs::write(
        store.join(".janus/writing/pod/crashed/2024-01-01_00.log"),
        "",
    )
    .expect("mark");

    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    assert_eq!(
        push(&janus, "evil").await,
        503,
        "a push through a linked directory fails"
    );
    assert_eq!(
        std::fs::read_dir(outside.join("ns")).expect("list").count(),
        0,
        "nothing was written outside the root"
    );
    assert_eq!(push(&janus, "good").await, 204);
    assert_eq!(
        std::fs::read_to_string(outside.join("victim")).expect("read"),
        "keep\n"
    );
    assert!(
        std::fs::read_to_string(store.join("pod/good/2024-01-01_00.log"))
            .expect("written")
            .ends_with("hello\n")
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("torn")).expect("read"),
        "whole line\nhalf a li",
        "start-up repair did not cut through a link"
    );
    janus.assert_alive_and_bounded("planted links");
    drop(janus);
    let _ = std::fs::remove_dir_all(base);
}
