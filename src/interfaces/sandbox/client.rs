//! A client for the sandbox's control API under `/_sandbox/`.

use std::net::SocketAddr;

use super::{Recorded, Rule, Stats};

/// A small client for the sandbox's control API, used by the demo and the tests.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn add_rule(&self, rule: &Rule) -> reqwest::Result<()> {
        self.http
            .post(format!("{}/_sandbox/rules", self.base))
            .json(rule)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Forgets every request and rule.
    pub async fn reset(&self) -> reqwest::Result<()> {
        self.http
            .post(format!("{}/_sandbox/reset", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Removes every rule: from now on the partner answers 200.
    pub async fn clear_rules(&self) -> reqwest::Result<()> {
        self.http
            .delete(format!("{}/_sandbox/rules", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn requests(&self) -> reqwest::Result<Vec<Recorded>> {
        self.http
            .get(format!("{}/_sandbox/requests", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    pub async fn stats(&self) -> reqwest::Result<Stats> {
        self.http
            .get(format!("{}/_sandbox/stats", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
}
