//! A registry in an S3 bucket (AWS, or any S3-compatible server).
//!
//! S3 writes are atomic per object. Creation uses `If-None-Match: *` and
//! replacement `If-Match: <etag>`, which S3 answers with 412 when another
//! writer got there first; large files go up as a multipart upload whose
//! completion carries the same condition.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{CondPut, ListedObject, Object, ObjectStore, StoreError, Version};

/// Files at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
const PART_SIZE: u64 = 8 * 1024 * 1024;

/// How to reach S3. Unset fields fall back to the standard AWS environment
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials chain).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by most
    /// self-hosted S3 servers.
    pub force_path_style: bool,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    /// The endpoint the client talks to, for [`ObjectStore::identity`].
    endpoint: String,
}

fn status<E, R: HttpStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(|r| r.status_code())
}

trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// 412 Precondition Failed, or 409 when S3 saw two conditional writes race.
fn is_conflict(code: Option<u16>) -> bool {
    matches!(code, Some(412) | Some(409))
}

/// An S3 client for `cfg`: endpoint override and path style for S3-compatible
/// servers, the standard AWS environment for the rest.
pub async fn s3_client(cfg: &S3Config) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &cfg.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        // S3 needs some region to sign with; us-east-1 is what S3-compatible servers expect.
        conf = conf.region(aws_sdk_s3::config::Region::new("us-east-1"));
    }
    Client::from_conf(conf.force_path_style(cfg.force_path_style).build())
}

impl S3Store {
    pub async fn new(bucket: &str, prefix: &str, cfg: &S3Config) -> Self {
        // The endpoint as the SDK resolves it: the setting, else the standard
        // environment, else AWS itself (bucket names are global there).
        let endpoint = cfg
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .unwrap_or_else(|| "aws".into());
        let mut store = Self::from_client(s3_client(cfg).await, bucket, prefix);
        store.endpoint = endpoint;
        store
    }

    pub fn from_client(client: Client, bucket: &str, prefix: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: "aws".into(),
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    fn remote<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        op: &'static str,
        key: &str,
        e: SdkError<E, R>,
    ) -> StoreError {
        StoreError::Remote {
            store: self.location(),
            op,
            key: key.to_string(),
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    fn io(&self, op: &'static str, key: &str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            store: self.location(),
            op,
            key: key.to_string(),
            source,
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.remote("head", key, e)),
        }
    }

    async fn multipart_create(&self, key: &str, src: &Path, size: u64) -> Result<bool, StoreError> {
        let full = self.full_key(key);
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.remote("start multipart upload", key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result = self.multipart_parts(key, &full, &upload_id, src, size).await;
        if !matches!(result, Ok(true)) {
            // Best effort: an abandoned upload only costs storage until the bucket's lifecycle rule.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn multipart_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        src: &Path,
        size: u64,
    ) -> Result<bool, StoreError> {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let len = PART_SIZE.min(size - offset);
            let body = ByteStream::read_from()
                .path(src)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| self.io("read part of", key, std::io::Error::other(e)))?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| self.remote("upload part", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        match self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(status(&e)) => Ok(false),
            Err(e) => Err(self.remote("complete multipart upload", key, e)),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn identity(&self) -> String {
        format!("{} at {}", self.location(), self.endpoint.trim_end_matches('/'))
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(self.remote("get", key, e)),
        };
        let version = out.e_tag().unwrap_or_default().to_string();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| self.io("read body of", key, std::io::Error::other(e)))?
            .into_bytes();
        Ok(Some(Object { bytes, version }))
    }

    async fn download(&self, key: &str, dest: &Path) -> Result<bool, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(false),
            Err(e) => return Err(self.remote("get", key, e)),
        };
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io("create folder for", key, e))?;
        let tmp = crate::atomic::temp_file_in(dir, ".tmp-", "")
            .map_err(|e| self.io("create temporary file for", key, e))?;
        let (std_file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut reader = out.body.into_async_read();
        tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(|e| self.io("download", key, e))?;
        file.sync_all().await.map_err(|e| self.io("download", key, e))?;
        tmp_path
            .persist(dest)
            .map_err(|e| self.io("rename download of", key, e.error))?;
        Ok(true)
    }

    async fn create_from_file(&self, key: &str, src: &Path) -> Result<bool, StoreError> {
        if self.exists(key).await? {
            return Ok(false);
        }
        let size = std::fs::metadata(src)
            .map_err(|e| self.io("read", key, e))?
            .len();
        if size >= MULTIPART_THRESHOLD {
            return self.multipart_create(key, src, size).await;
        }
        let body = ByteStream::from_path(src)
            .await
            .map_err(|e| self.io("read", key, std::io::Error::other(e)))?;
        match self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .body(body)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(status(&e)) => Ok(false),
            Err(e) => Err(self.remote("put", key, e)),
        }
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<CondPut, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(bytes));
        req = match expected {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(CondPut::Written(out.e_tag().unwrap_or_default().to_string())),
            // 404: the object we expected to replace is gone; the caller re-reads.
            Err(e) if is_conflict(status(&e)) || (expected.is_some() && status(&e) == Some(404)) => {
                Ok(CondPut::Conflict)
            }
            Err(e) => Err(self.remote("conditional put", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote("list", prefix, e))?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                out.push(ListedObject {
                    key: k[strip.min(k.len())..].to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified: obj
                        .last_modified()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                });
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.remote("delete", key, e))?;
        Ok(())
    }
}
