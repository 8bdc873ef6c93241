//! The check's report: one section per check, one finding per line, rendered for a person
//! (text) or for a program (`--json`, whose field names are stable).

use serde::Serialize;

/// One line of a section: something that holds or does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Whether it holds.
    pub holds: bool,
    /// What it is about: a file, an account, a request, a consumer group.
    pub subject: String,
    /// What was found, in words.
    pub detail: String,
}

impl Finding {
    pub fn holds(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            holds: true,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    pub fn fails(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            holds: false,
            subject: subject.into(),
            detail: detail.into(),
        }
    }
}

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Section {
    /// A stable key: `integrity`, `balances`, `requests` or `consumers`.
    pub name: &'static str,
    /// What the check verifies, in words.
    pub title: String,
    /// Whether every finding holds.
    pub holds: bool,
    /// What it found: the failures one by one, what holds mostly summed up.
    pub findings: Vec<Finding>,
}

impl Section {
    pub fn new(name: &'static str, title: impl Into<String>, findings: Vec<Finding>) -> Self {
        Self {
            name,
            title: title.into(),
            holds: findings.iter().all(|finding| finding.holds),
            findings,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The data directory checked.
    pub data_dir: String,
    /// Whether every check holds.
    pub holds: bool,
    /// The checks, in the order they ran.
    pub sections: Vec<Section>,
    /// One sentence: what holds and what fails.
    pub summary: String,
}

impl Report {
    pub fn new(data_dir: String, sections: Vec<Section>) -> Self {
        let failed: Vec<&str> = sections
            .iter()
            .filter(|section| !section.holds)
            .map(|section| section.name)
            .collect();
        let summary = if sections.is_empty() {
            "nothing to check: the directory holds no database of the bank".to_owned()
        } else if failed.is_empty() {
            format!("all {} checks hold", sections.len())
        } else {
            format!(
                "{} of {} checks fail: {}",
                failed.len(),
                sections.len(),
                failed.join(", ")
            )
        };
        Self {
            data_dir,
            holds: failed.is_empty(),
            sections,
            summary,
        }
    }

    /// The report as a person reads it.
    pub fn text(&self) -> String {
        let mut out = format!("onlinebank check of {}\n", self.data_dir);
        for section in &self.sections {
            let mark = if section.holds { "✓" } else { "✗" };
            out.push_str(&format!("\n{mark} {}: {}\n", section.name, section.title));
            for finding in &section.findings {
                let mark = if finding.holds { "✓" } else { "✗" };
                out.push_str(&format!(
                    "  {mark} {}: {}\n",
                    finding.subject, finding.detail
                ));
            }
        }
        out.push_str(&format!("\n{}\n", self.summary));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_checks_that_fail_and_every_line_is_marked() {
        let report = Report::new(
            "/data".into(),
            vec![
                Section::new(
                    "integrity",
                    "every database is sound",
                    vec![Finding::holds("account.db", "ok")],
                ),
                Section::new(
                    "balances",
                    "balance == ledger == read model",
                    vec![Finding::fails("account 1001", "balance 5, ledger 4")],
                ),
            ],
        );
        assert!(!report.holds);
        assert_eq!(report.summary, "1 of 2 checks fail: balances");
        let text = report.text();
        assert!(text.contains("  ✓ account.db: ok\n"), "{text}");
        assert!(text.contains("✗ balances: balance == ledger"), "{text}");
        assert!(
            text.contains("  ✗ account 1001: balance 5, ledger 4\n"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["sections"][1]["findings"][0]["holds"], false);
        assert_eq!(json["dataDir"], "/data");
    }

    #[test]
    fn a_directory_without_databases_has_nothing_to_check_and_holds() {
        let report = Report::new("/empty".into(), Vec::new());
        assert!(report.holds);
        assert!(report.summary.starts_with("nothing to check"));
    }
}
