//! Wiring of signed feeds into the agent: the subscriber's rules and pollers, the publisher
//! behind `GET /v1/feeds/{feed}`, and the feeds' rows in `GET /v1/lists`. Kept out of `app.rs`
//! so the composition root only gains a few lines.
//!
//! Knows nothing of how feeds are signed, fetched or compiled (that is `lists::feeds`).

use std::sync::Arc;

use super::config::Config;
use super::AppError;
use crate::lists::feeds::{FeedRules, Publisher, WithFeeds};
use crate::lists::overlay::FileLists;
use crate::lists::store::DB_FILE;
use crate::lists::watch::ListFiles;
use crate::metrics::Collect;

/// The feed parts of a running agent; each is absent when not configured.
pub struct Feeds {
    pub rules: Option<Arc<FeedRules>>,
    pub publisher: Option<Arc<Publisher>>,
}

/// Open the subscriber state (persisted in the data dir) and the publisher. Call after the
/// store is open: the publisher reads the store file.
pub fn open(config: &Config) -> Result<Feeds, AppError> {
    let rules = if config.feeds.is_empty() {
        None
    } else {
        Some(Arc::new(
            FeedRules::open(&config.store.data_dir, &config.feeds)
                .map_err(|e| AppError(format!("feeds: {e}; refusing to start")))?,
        ))
    };
    let publisher = if config.publish.feeds.is_empty() {
        None
    } else {
        Some(Arc::new(
            Publisher::open(&config.publish, &config.store.data_dir.join(DB_FILE))
                .map_err(|e| AppError(format!("publish: {e}")))?,
        ))
    };
    Ok(Feeds { rules, publisher })
}

/// The file lists, plus the feeds when there are any, as the admin side lists them.
pub fn with_files(files: Arc<ListFiles>, feeds: &Feeds) -> Arc<dyn FileLists> {
    match &feeds.rules {
        Some(f) => Arc::new(WithFeeds {
            files,
            feeds: f.clone(),
        }),
        None => files,
    }
}

impl Feeds {
    pub fn collectors(&self) -> Vec<Arc<dyn Collect>> {
        let mut v: Vec<Arc<dyn Collect>> = Vec::new();
        if let Some(r) = &self.rules {
            v.push(r.clone());
        }
        if let Some(p) = &self.publisher {
            v.push(p.clone());
        }
        v
    }
}
