//! The stock-change feed over HTTP (long polling, like Kafka's fetch).

use super::error::{AppError, ErrorBody};
use super::extract::{Limit, SeqCursor, Wait, query_extractor};
use super::lookups::ServerErrors;
use super::state::AppState;
use crate::ledger::log::{Change, ChangeFilter};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The feed's route.
pub const PATH: &str = "/api/v1/stock/changes";

/// How long before the end of its `wait` a long poll stops waiting, to
/// read once more and answer within the `wait`.
const ANSWER_MARGIN: Duration = Duration::from_millis(250);

/// How long a read waits for the horizon to cover what was committed
/// before it came (read-your-writes); past it, it answers what it has.
const FRESH_WITHIN: Duration = Duration::from_secs(2);

/// `?after=&limit=&warehouse_id=&product_id=&wait=`, parsed by hand so a
/// bad value gets the API's error shape. An unknown parameter is refused:
/// a reader whose `after` is misspelt would otherwise start again from 0.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangeParams {
    /// The `next_after` of the previous answer; 0 (the start) when absent.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Changes per answer, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only this warehouse's changes.
    #[param(value_type = Option<Uuid>)]
    warehouse_id: Option<String>,
    /// Only this product's changes.
    #[param(value_type = Option<Uuid>)]
    product_id: Option<String>,
    /// Seconds to hold the request, 0 to 30, while there is nothing new.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 30)]
    wait: Option<String>,
}

query_extractor! {
    /// The feed's query, parsed.
    ChangeQuery from ChangeParams {
        after: SeqCursor,
        limit: Limit,
        wait: Wait,
        warehouse_id: Option<Uuid>,
        product_id: Option<Uuid>,
    }
}

/// Changes in `seq` order.
#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    items: Vec<Change>,
    /// Pass as `after` next time: every change up to it that this filter
    /// selects has been answered, now or before. A read filtered by one
    /// warehouse or one product walks at most `READ_SCAN_LIMIT` positions
    /// of the log, so it may answer nothing new with a `next_after` that
    /// moved on: ask again from there at once.
    next_after: i64,
}

/// Every change of stock since `after`, in the ledger's order, exactly
/// once for a reader that always passes `next_after` back. With `wait`,
/// an answer with nothing new is held until a change arrives or the wait
/// ends.
#[utoipa::path(
    get,
    path = "/api/v1/stock/changes",
    tag = "changes",
    params(ChangeParams),
    responses(
        (status = 200, description = "The changes after `after`, read from PostgreSQL", body = ChangePage),
        (status = 400, description = "`invalid_query` or `invalid_uuid`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn changes(
    State(state): State<AppState>,
    query: ChangeQuery,
) -> Result<Json<ChangePage>, AppError> {
    let (SeqCursor(after), Limit(limit), Wait(wait)) = (query.after, query.limit, query.wait);
    let filter = ChangeFilter {
        warehouse_id: query.warehouse_id,
        product_id: query.product_id,
    };
    // The answer is written after the last read, so the waiting stops a
    // little before `wait` runs out: a client whose timeout equals `wait`
    // gets its answer.
    let until = tokio::time::Instant::now() + wait.saturating_sub(ANSWER_MARGIN);
    let log = &state.changes;
    let mut horizon = log.fresh_horizon(FRESH_WITHIN).await;
    // Where the next read starts: everything up to the horizon read so far
    // held nothing this reader wants, so a wake reads only what is new.
    let mut read_from = after;
    let read = loop {
        let read = log.changes(read_from, horizon, filter, limit).await?;
        // A read that stopped short of the horizon (its walk is bounded)
        // answers at once: the reader goes on from where it stopped.
        if !read.changes.is_empty()
            || read.reached < horizon
            || tokio::time::Instant::now() >= until
        {
            break read;
        }
        // Nothing this reader wants up to the horizon: wait for it to move.
        read_from = horizon.max(read_from);
        horizon = log.horizon_passes(read_from, until).await;
        if horizon <= read_from {
            // The wait ran out, or the service is stopping (the horizon no
            // longer moves): answer what there is, which is nothing new.
            break read;
        }
    };
    let next_after = match read.changes.last() {
        Some(last) if read.changes.len() as i64 == limit => last.seq,
        _ => after.max(read.reached),
    };
    let items = read.changes;
    Ok(Json(ChangePage { items, next_after }))
}
