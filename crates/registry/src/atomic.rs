//! Files that appear whole or not at all: written into a hidden temporary file in
//! the target's folder, then renamed over the target (atomic on one filesystem).

use std::io;
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
}
