//! The operator's view: the internal endpoints on each role's own port, every store's snapshot
//! and its consistency (nothing pending, account == history == mypage), `/metrics`.

use super::*;
use onlinebank_core::internal::{self, AccountsAnswer, LedgerSums, PendingAnswer};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// One account as the account role, history and mypage see it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRow {
    pub customer_id: String,
    pub balance: i64,
    pub status: String,
    pub version: i64,
    /// Won of transfers out not yet credited or reversed (the account role's list only).
    pub in_flight: i64,
}

/// Every store's view at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub accounts: BTreeMap<String, AccountRow>,
    pub ledger: BTreeMap<String, i64>,
    pub mypage: BTreeMap<String, AccountRow>,
    pub pending: usize,
}

/// The accounts of an internal list by account number.
fn by_account_no(answer: AccountsAnswer) -> BTreeMap<String, AccountRow> {
    answer
        .items
        .into_iter()
        .map(|account| {
            let row = AccountRow {
                customer_id: account.customer_id.as_str().to_owned(),
                balance: account.balance.won(),
                status: account.status.as_str().to_owned(),
                version: account.version,
                in_flight: account.in_flight.won(),
            };
            (account.account_no.as_str().to_owned(), row)
        })
        .collect()
}

impl Snapshot {
    /// Why this snapshot is not drained and consistent, if it is not.
    pub fn inconsistency(&self) -> Option<String> {
        if self.pending != 0 {
            return Some(format!("{} requests still pending", self.pending));
        }
        for (no, account) in &self.accounts {
            if account.in_flight != 0 {
                return Some(format!(
                    "account {no}: {} won still in flight",
                    account.in_flight
                ));
            }
            let ledger = self.ledger.get(no).copied().unwrap_or(0);
            if ledger != account.balance {
                return Some(format!(
                    "account {no}: balance {} but history ledger sum {ledger}",
                    account.balance
                ));
            }
            match self.mypage.get(no) {
                None => return Some(format!("account {no} missing from mypage")),
                Some(row) if row.balance != account.balance || row.version != account.version => {
                    return Some(format!(
                        "account {no}: account says {account:?}, mypage says {row:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        for no in self.mypage.keys() {
            if !self.accounts.contains_key(no) {
                return Some(format!("mypage has {no} which the account role does not"));
            }
        }
        None
    }
}

/// The internal endpoints of each role, with the shared internal token.
#[derive(Clone)]
pub struct Ops {
    pub urls: HashMap<String, String>,
    /// Each process's admin listener (`/metrics`), by role or process name.
    pub admin: HashMap<String, String>,
    pub token: String,
    http: reqwest::Client,
}

impl Ops {
    pub(crate) fn new(
        urls: HashMap<String, String>,
        admin: HashMap<String, String>,
        token: String,
    ) -> Ops {
        Ops {
            urls,
            admin,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    /// `GET` on a role's own port with the internal header.
    pub async fn internal(&self, role: &str, path: &str) -> Result<(u16, Value), String> {
        self.get(role, path, true).await
    }

    /// A role's own-port `GET` without the internal header.
    pub async fn plain(&self, role: &str, path: &str) -> Result<(u16, Value), String> {
        self.get(role, path, false).await
    }

    async fn get(&self, role: &str, path: &str, internal: bool) -> Result<(u16, Value), String> {
        let api = Api::on(&self.urls[role], self.http.clone());
        let mut request = api.get_req(path);
        if internal {
            request = request.header(onlinebank_core::http::INTERNAL_HEADER, &self.token);
        }
        Ok(request.try_send().await?.pair())
    }

    /// `GET /metrics` on the admin listener of a role's process: the Prometheus text and its
    /// content type.
    pub async fn metrics(&self, role: &str) -> Result<(String, String), String> {
        let reply = Api::on(&self.admin[role], self.http.clone())
            .get_req("/metrics")
            .try_send()
            .await?;
        if reply.status != 200 {
            return Err(format!(
                "GET {}/metrics: {}",
                self.admin[role], reply.status
            ));
        }
        let content_type = reply.header("content-type").unwrap_or_default();
        Ok((reply.text, content_type))
    }

    /// The sum of every series of `name` on a role whose labels include all of `labels`
    /// (`None`: no such series).
    pub async fn metric(
        &self,
        role: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Option<f64>, String> {
        let (text, _) = self.metrics(role).await?;
        Ok(metric_value(&text, name, labels))
    }

    /// A role's internal answer to `GET path`, as `T`; anything but a 200 `T` is an error.
    pub async fn internal_answer<T: DeserializeOwned>(
        &self,
        role: &str,
        path: &str,
    ) -> Result<T, String> {
        let (status, body) = self.internal(role, path).await?;
        if status != 200 {
            return Err(format!("{role} {path}: {status} {body}"));
        }
        T::deserialize(&body).map_err(|error| format!("{role} {path}: {error} in {body}"))
    }

    /// The same endpoints with calls timing out after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Ops {
        self.http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("http client");
        self
    }

    /// How many requests are not finished yet.
    pub async fn pending(&self) -> Result<usize, String> {
        let pending: PendingAnswer = self
            .internal_answer("request", internal::REQUESTS_PENDING)
            .await?;
        Ok(pending.count)
    }

    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let accounts = self.internal_answer("account", internal::ACCOUNTS).await?;
        let mypage = self.internal_answer("mypage", internal::ACCOUNTS).await?;
        let ledger: LedgerSums = self.internal_answer("history", internal::LEDGER).await?;
        Ok(Snapshot {
            accounts: by_account_no(accounts),
            ledger: ledger
                .items
                .into_iter()
                .map(|sum| (sum.account_no, sum.sum))
                .collect(),
            mypage: by_account_no(mypage),
            pending: self.pending().await?,
        })
    }

    /// Polls until nothing is pending and account == history == mypage for every account.
    pub async fn drained(&self, timeout: Duration) -> Snapshot {
        eventually(
            "every store to agree and nothing pending",
            timeout,
            || async {
                let snapshot = self.snapshot().await?;
                match snapshot.inconsistency() {
                    None => Ok(snapshot),
                    Some(why) => Err(why),
                }
            },
        )
        .await
    }
}

/// In Prometheus text, the sum of the samples of `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let matches = labels
            .iter()
            .all(|(key, want)| label_text.contains(&format!("{key}=\"{want}\"")));
        if !matches {
            continue;
        }
        if let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// A restored account: its deposits are among those sent (`known` amounts), and its balance ==
/// `opening` + those deposits == what the gateway answers == the account role's in `snapshot`.
pub async fn assert_restored_account(
    api: &Api,
    token: &str,
    no: &str,
    (opening, restored, known): (i64, &BTreeSet<i64>, &BTreeSet<i64>),
    snapshot: &Snapshot,
) {
    assert!(
        restored.is_subset(known),
        "{no}: deposits nobody sent: {restored:?}"
    );
    let balance = opening + restored.iter().sum::<i64>();
    let (status, body) = api.balance(token, no).await;
    assert_eq!(status, 200, "{body}");
    let read: wire::ReadAnswer = wire::decode(&body);
    assert_eq!(
        read.balance,
        Some(balance),
        "{no}: balance != history: {body}"
    );
    assert_eq!(snapshot.accounts[no].balance, balance, "{no}: account role");
}
