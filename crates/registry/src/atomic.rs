//! Files that appear whole or not at all: written into a hidden temporary file in
//! the target's folder, then renamed over the target (atomic on one filesystem).

use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

/// A hidden temporary file `dir/{prefix}XXXXXX{suffix}`, to be persisted over its
/// target. It gets the permissions `File::create` would give (0o666 less the umask),
/// not tempfile's owner-only 0o600: artifacts, registry folders, caches and outputs
/// are read by other users too (a container's unprivileged serve user, say).
pub fn temp_file_in(dir: &Path, prefix: &str, suffix: &str) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// A hidden temporary file in `target`'s folder (created if missing), to be
/// persisted over `target`.
pub fn temp_file_beside(target: &Path) -> io::Result<NamedTempFile> {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    temp_file_in(dir, ".tmp-", "")
}

/// Write `bytes` to `path` whole or not at all: into a hidden temporary file beside
/// it, synced, then renamed over it.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = temp_file_beside(path)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn persisted_files_get_the_permissions_of_a_plain_create() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let tmp = temp_file_in(dir.path(), ".t-", ".tmp").unwrap();
        let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".t-") && name.ends_with(".tmp"), "{name}");
        let target = dir.path().join("target");
        tmp.persist(&target).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), mode(&plain));
        assert_ne!(mode(&target) & 0o044, 0, "readable beyond the owner under the usual umask");
    }

    #[test]
    fn write_creates_the_folder_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/out.json");
        write(&target, b"first").unwrap();
        write(&target, b"second").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.json"]);
    }
}
