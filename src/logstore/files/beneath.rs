//! Opening, creating and removing files beneath the store root without ever following a link.
//!
//! The store is shared with other writers (Fluent Bit, Lethe) and its names come partly from
//! pushed labels, so a link planted anywhere below the root — a namespace directory pointing at
//! `/etc`, a marker pointing at a file to truncate — must never redirect a write. Every path is
//! walked one component at a time from the root's directory descriptor with `O_NOFOLLOW`, and
//! only plain names (no `..`, no absolute paths) are accepted: the kernel refuses any link on
//! the way (`ELOOP`/`ENOTDIR`), whoever planted it and whenever.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{mkdirat, openat, unlinkat, AtFlags, Mode, OFlags, CWD};

/// How to open the file at the end of the walk.
#[derive(Debug, Clone, Copy)]
pub enum Open {
    /// Read and append, created if missing (hour files).
    Append,
    /// Write, created or emptied (markers).
    Truncate,
    /// Read and write an existing file (repair).
    Existing,
    /// Read an existing file (Janus's own state, such as persisted indexes).
    Read,
}

fn plain_names(relative: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", relative.display()),
            )),
        })
        .collect()
}

fn directory_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens the directory `relative` below `root`, creating missing directories when `create`.
fn walk_dirs(root: &Path, names: &[&std::ffi::OsStr], create: bool) -> io::Result<OwnedFd> {
    // The root itself is the operator's setting and may be a link (e.g. to a mounted volume).
    let root_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = match openat(CWD, root, root_flags, Mode::empty()) {
        Err(rustix::io::Errno::NOENT) if create => {
            std::fs::create_dir_all(root)?;
            openat(CWD, root, root_flags, Mode::empty())?
        }
        other => other?,
    };
    for name in names {
        dir = match openat(&dir, *name, directory_flags(), Mode::empty()) {
            Ok(next) => next,
            Err(rustix::io::Errno::NOENT) if create => {
                match mkdirat(&dir, *name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                openat(&dir, *name, directory_flags(), Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(dir)
}

/// Opens `root/relative` as `how` says, refusing a link in any component below the root.
/// Missing directories are created for `Append` and `Truncate`.
pub fn open(root: &Path, relative: &Path, how: Open) -> io::Result<File> {
    let names = plain_names(relative)?;
    let Some((file, dirs)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let create = !matches!(how, Open::Existing | Open::Read);
    let dir = walk_dirs(root, dirs, create)?;
    let flags = OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | match how {
            Open::Append => OFlags::RDWR | OFlags::APPEND | OFlags::CREATE,
            Open::Truncate => OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            Open::Existing => OFlags::RDWR,
            Open::Read => OFlags::RDONLY,
        };
    let fd = openat(&dir, *file, flags, Mode::from_raw_mode(0o644))?;
    let file = File::from(fd);
    // A FIFO or device planted under a log file's name is no log file.
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", relative.display()),
        ));
    }
    Ok(file)
}

/// Replaces `root/relative` with `bytes` atomically: written under a temporary name in the same
/// directory (created exclusively, never through a link), then renamed over the old one, so a
/// reader sees the old file or the new one, never a part. Missing directories are created.
pub fn replace(root: &Path, relative: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let names = plain_names(relative)?;
    let Some((file, dirs)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let dir = walk_dirs(root, dirs, true)?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(file);
    temporary.push(format!(".{}.tmp", std::process::id()));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // A leftover of a crashed write under the same name goes first (unlinking never follows).
    match unlinkat(&dir, temporary.as_os_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = openat(
        &dir,
        temporary.as_os_str(),
        flags,
        Mode::from_raw_mode(0o644),
    )?;
    let written = File::from(fd).write_all(bytes);
    let renamed = written.and_then(|()| {
        rustix::fs::renameat(&dir, temporary.as_os_str(), &dir, *file).map_err(io::Error::from)
    });
    if renamed.is_err() {
        let _ = unlinkat(&dir, temporary.as_os_str(), AtFlags::empty());
    }
    renamed
}

/// Removes the file `root/relative`; a link in a directory component is refused, a link as the
/// last component is removed itself (unlinking never follows it).
pub fn remove(root: &Path, relative: &Path) -> io::Result<()> {
    let names = plain_names(relative)?;
    let Some((file, dirs)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let dir = walk_dirs(root, dirs, false)?;
    unlinkat(&dir, *file, AtFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn links_anywhere_below_the_root_are_refused() {
        let base = std::env::temp_dir().join(format!("janus-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("pod")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("pod/evil")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("pod/link.log")).unwrap();

        for how in [Open::Append, Open::Truncate, Open::Existing] {
            assert!(open(&root, Path::new("pod/evil/2024-01-01_00.log"), how).is_err());
            assert!(open(&root, Path::new("pod/evil/victim"), how).is_err());
            assert!(open(&root, Path::new("pod/link.log"), how).is_err());
        }
        assert!(open(&root, Path::new("pod/../outside/x"), Open::Append).is_err());
        assert!(open(&root, Path::new("/etc/passwd"), Open::Existing).is_err());
        assert!(remove(&root, Path::new("pod/evil/victim")).is_err());
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

        let mut f = open(&root, Path::new("pod/shop/2024-01-01_00.log"), Open::Append).unwrap();
        f.write_all(b"line\n").unwrap();
        assert_eq!(
            std::fs::read(root.join("pod/shop/2024-01-01_00.log")).unwrap(),
            b"line\n"
        );
        remove(&root, Path::new("pod/link.log")).unwrap();
        // Replacing writes through no link either, and leaves no temporary file behind.
        assert!(replace(&root, Path::new("pod/evil/victim"), b"x").is_err());
        replace(&root, Path::new(".janus/index/a.idx"), b"one").unwrap();
        replace(&root, Path::new(".janus/index/a.idx"), b"two").unwrap();
        assert_eq!(
            std::fs::read(root.join(".janus/index/a.idx")).unwrap(),
            b"two"
        );
        assert_eq!(
            std::fs::read_dir(root.join(".janus/index"))
                .unwrap()
                .count(),
            1
        );
        let mut read = open(&root, Path::new(".janus/index/a.idx"), Open::Read).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut read, &mut text).unwrap();
        assert_eq!(text, "two");
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep");
        std::fs::remove_dir_all(base).unwrap();
    }
}
