//! The business domain: what a movement event is and the rules that turn a
//! sequence of them into stock and movements. Nothing here does I/O.

pub mod binding;
pub mod correction;
pub mod event;
pub mod movement;
pub mod rules;

pub use binding::{DecodeCode, DecodeError, Transport};
pub use correction::{CorrectionDetails, CorrectionReason};
pub use event::{
    ADJUSTMENT_TYPE, EVENT_TIME_MILLIS, EventContent, EventKind, FieldError, MovementEvent,
    ParseError, Quantity,
};
pub use movement::{MovementState, MovementStatus, MovementView, Side};
pub use rules::{Differs, LedgerState, Outcome, PriorEvent, RejectReason, Verdict, apply_batch};
