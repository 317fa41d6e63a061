//! What every handler is given: the ledger, the committer, the feed's
//! readers and the components' status.

use crate::feed::levels::Levels;
use crate::feed::relay::RelayStatus;
use crate::ingest::GroupCommit;
use crate::ingest::kafka::KafkaStatus;
use crate::ledger::Ledger;
use crate::ledger::log::ChangeLog;
use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub commits: GroupCommit,
    pub kafka: KafkaStatus,
    /// The ledger's change record, for the feed over HTTP.
    pub changes: ChangeLog,
    pub levels: Levels,
    pub relay: RelayStatus,
    pub metrics: Metrics,
}
