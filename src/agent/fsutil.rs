//! The one way stackring writes files: whole, atomically, durably.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same directory, fsyncs it, renames
/// it over `path` and fsyncs the directory: readers see the old file or the new one, never a part.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files `write_atomic` leaves for `path` when a writer is killed between
/// create and rename (`kill -9`, power loss). Called at start, before this process writes `path`.
/// Returns how many were removed.
pub(crate) fn remove_stale_temporaries(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let own = format!("{prefix}{}", std::process::id());
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix)
                && n != own
                && n[prefix.len()..].bytes().all(|b| b.is_ascii_digit())
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_a_killed_writer_are_removed() {
        let dir =
            std::env::temp_dir().join(format!("stackring-fsutil-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.json");
        fs::write(dir.join(".cluster.json.tmp.4242"), b"half").unwrap();
        fs::write(dir.join(".cluster.json.tmp.17"), b"half").unwrap();
        fs::write(dir.join(".cluster.json.tmp.x"), b"not ours").unwrap();
        fs::write(dir.join(".other.json.tmp.4242"), b"not ours").unwrap();
        fs::write(&path, b"{}").unwrap();
        assert_eq!(remove_stale_temporaries(&path), 2);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".cluster.json.tmp.x",
                ".other.json.tmp.4242",
                "cluster.json"
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("stackring-fsutil-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.env");
        write_atomic(&path, b"A=1\nB=2\n", 0o644).unwrap();
        write_atomic(&path, b"A=3\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=3\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
