//! Where images are read from and annotations written to: `s3://BUCKET/PREFIX`
//! or a local folder (`file://PATH` or a plain path).

use std::path::PathBuf;

use crate::error::BatchError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `prefix` is empty or ends with `/`: a location is always a folder.
    S3 { bucket: String, prefix: String },
    Local(PathBuf),
}

impl Location {
    pub fn parse(s: &str) -> Result<Self, BatchError> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // Bucket naming rules, loosely: enough to catch typos and ARNs.
            let ok = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !ok {
                return Err(BatchError::BadLocation(format!(
                    "`{s}` does not name a valid bucket: write s3://BUCKET/PREFIX/ (bucket: 3-63 lowercase letters, digits, `-`, `.`)"
                )));
            }
            let mut prefix = prefix.trim_start_matches('/').to_string();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(Self::S3 { bucket: bucket.to_string(), prefix });
        }
        // `s3:/x` or `S3://x` are typos of an S3 URI, not folder names.
        if (s.contains("://") && !s.starts_with("file://")) || s.to_ascii_lowercase().starts_with("s3:") {
            return Err(BatchError::BadLocation(format!("`{s}` is neither s3://BUCKET/PREFIX/ nor a local folder (file://PATH or a path)")));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            return Err(BatchError::BadLocation("empty location: give s3://BUCKET/PREFIX/ or a folder".into()));
        }
        Ok(Self::Local(PathBuf::from(path)))
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Self::S3 { .. })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_as_folders_and_refuses_bad_uris() {
        assert_eq!(
            Location::parse("s3://photos/in").unwrap(),
            Location::S3 { bucket: "photos".into(), prefix: "in/".into() }
        );
        assert_eq!(Location::parse("s3://photos").unwrap(), Location::S3 { bucket: "photos".into(), prefix: String::new() });
        assert_eq!(Location::parse("file:///data/x").unwrap(), Location::Local("/data/x".into()));
        assert_eq!(Location::parse("rel/dir").unwrap(), Location::Local("rel/dir".into()));
        for bad in ["s3://", "s3:///x", "s3://Bad_Bucket/x", "https://b/x", ""] {
            let e = Location::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("s3://") || e.contains("empty"), "{bad}: {e}");
        }
    }
}
