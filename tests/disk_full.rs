//! A full disk under the store: a push that cannot be written whole leaves no byte behind (every
//! file it touched is cut back), so no later line is glued to a partial one and a retry
//! duplicates nothing. Runs on a small tmpfs (the test command runs as root, as CI does).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use janus::logstore::files::writer::{FsyncMode, Writer};
use support::temp_dir;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs failed: the disk-full test needs root (the test command runs as root)"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lines(n: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(
            format!(
                "2024-01-01T00:00:{:02}Z[shop|web|c] {tag} {i} {}\n",
                i % 60,
                "x".repeat(100)
            )
            .as_bytes(),
        );
    }
    out
}

fn read(root: &Path, relative: &str) -> Vec<u8> {
    std::fs::read(root.join(relative)).unwrap_or_default()
}

#[test]
fn a_full_disk_loses_or_garbles_no_acknowledged_line() {
    let fs = Tmpfs::mount("256k");
    let root = fs.0.join("store");
    let writer = Writer::new(root.clone(), FsyncMode::Always);
    let (a, b) = ("pod/shop/2024-01-01_00.log", "pod/web/2024-01-01_00.log");
    let mut acknowledged_a = Vec::new();
    let mut acknowledged_b = Vec::new();
    let mut refused = 0;
    for round in 0..200 {
        let batch = vec![
            (PathBuf::from(a), lines(7, &format!("a{round}"))),
            (PathBuf::from(b), lines(13, &format!("b{round}"))),
        ];
        let before = (read(&root, a).len(), read(&root, b).len());
        match writer.append(&batch) {
            Ok(_) => {
                acknowledged_a.extend_from_slice(&batch[0].1);
                acknowledged_b.extend_from_slice(&batch[1].1);
            }
            Err(e) => {
                refused += 1;
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected, got {e}");
                // Nothing of a refused request stays on disk, in either file.
                assert_eq!((read(&root, a).len(), read(&root, b).len()), before);
            }
        }
    }
    assert!(refused > 0, "the tmpfs never filled up");
    assert_eq!(read(&root, a), acknowledged_a);
    assert_eq!(read(&root, b), acknowledged_b);

    // Space comes back (another file is removed): the next pushes append after whole lines.
    std::fs::remove_file(root.join(b)).expect("free space");
    acknowledged_b.clear();
    let batch = vec![(PathBuf::from(a), lines(3, "after"))];
    writer.append(&batch).expect("space is back");
    acknowledged_a.extend_from_slice(&batch[0].1);
    assert_eq!(read(&root, a), acknowledged_a);
    assert!(read(&root, a).ends_with(b"\n"));
}

#[test]
fn an_append_after_a_line_without_newline_starts_a_new_line() {
    let root = temp_dir("no-newline");
    let relative = "pod/shop/2024-01-01_00.log";
    std::fs::create_dir_all(root.join("pod/shop")).expect("mkdir");
    std::fs::write(
        root.join(relative),
        b"2024-01-01T00:00:00Z[shop|p|c] lethe's last",
    )
    .expect("write");
    let writer = Writer::new(root.clone(), FsyncMode::Never);
    let ours = lines(1, "ours");
    writer
        .append(&[(PathBuf::from(relative), ours.clone())])
        .expect("append");
    let mut expected = b"2024-01-01T00:00:00Z[shop|p|c] lethe's last\n".to_vec();
    expected.extend_from_slice(&ours);
    assert_eq!(read(&root, relative), expected);
    // Another writer leaves a partial line while our appender is open: still a new line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(relative))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"partial"))
        .expect("other writer");
    writer
        .append(&[(PathBuf::from(relative), ours.clone())])
        .expect("append");
    expected.extend_from_slice(b"partial\n");
    expected.extend_from_slice(&ours);
    assert_eq!(read(&root, relative), expected);
    std::fs::remove_dir_all(root).expect("cleanup");
}

/// The same over HTTP: pushes answered 503 on a full disk leave nothing behind, and a push after
/// space comes back is appended after whole lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_on_a_full_disk_are_all_or_nothing() {
    use support::guarded::Guarded;
    let fs = Tmpfs::mount("256k");
    let store = fs.0.join("store");
    // Space to free later, once the disk is full.
    std::fs::write(fs.0.join("ballast"), vec![b'b'; 48 * 1024]).expect("ballast");
    let janus = Guarded::start(&store, "http://127.0.0.1:1", &["--storage.fsync=always"]).await;
    let client = support::raw_client();
    let push = |round: usize| {
        let values: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    r#"["{}","r{round} line {i} {}"]"#,
                    1_704_067_200_000_000_000i64 + i,
                    "z".repeat(100)
                )
            })
            .collect();
        let body = format!(
            r#"{{"streams":[{{"stream":{{"namespace":"a","pod":"p","container":"c"}},"values":[{}]}},{{"stream":{{"namespace":"b","pod":"p","container":"c"}},"values":[{}]}}]}}"#,
            values.join(","),
            values.join(",")
        );
        client
            .post(format!("{}/loki/api/v1/push", janus.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let (a, b) = ("pod/a/2024-01-01_00.log", "pod/b/2024-01-01_00.log");
    let mut acknowledged = 0;
    let mut refused = 0;
    for round in 0..300 {
        let before = (read(&store, a), read(&store, b));
        let status = push(round).await.expect("answer").status().as_u16();
        match status {
            204 => acknowledged += 1,
            503 => {
                refused += 1;
                assert_eq!(
                    (read(&store, a), read(&store, b)),
                    before,
                    "a refused push left bytes"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused > 0 && acknowledged > 0,
        "{acknowledged} acknowledged, {refused} refused"
    );
    for file in [a, b] {
        let text = String::from_utf8(read(&store, file)).expect("utf-8");
        assert_eq!(text.lines().count(), acknowledged * 20, "{file}");
        assert!(text.ends_with('\n'));
    }
    std::fs::remove_file(fs.0.join("ballast")).expect("free space");
    assert_eq!(push(999).await.expect("answer").status(), 204);
    for file in [a, b] {
        let text = String::from_utf8(read(&store, file)).expect("utf-8");
        assert_eq!(text.lines().count(), (acknowledged + 1) * 20, "{file}");
        assert!(text
            .lines()
            .all(|l| janus::logstore::line::parse(l.as_bytes()).is_some()));
    }
    drop(janus);
}
