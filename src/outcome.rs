//! What happened to one row: the record the results file keeps.

use std::time::SystemTime;

/// `rts_status`, as the results file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Accepted,
    Failed,
    Invalid,
    Duplicate,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Failed => "failed",
            Status::Invalid => "invalid",
            Status::Duplicate => "duplicate",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Accepted,
            Status::Failed,
            Status::Invalid,
            Status::Duplicate,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One row's outcome, with the row's own fields for echoing.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: u64,
    pub fields: Vec<String>,
    pub status: Status,
    pub http_status: Option<u16>,
    pub error_code: String,
    pub message: String,
    pub attempts: u32,
    pub at: SystemTime,
}

impl Outcome {
    /// An outcome decided without sending anything.
    pub fn unsent(row: u64, fields: Vec<String>, status: Status, message: String) -> Outcome {
        Outcome {
            row,
            fields,
            status,
            http_status: None,
            error_code: String::new(),
            message,
            attempts: 0,
            at: SystemTime::now(),
        }
    }
}
