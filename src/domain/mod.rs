//! The business domain: what a movement event and a correction are, and the
//! rules that turn a sequence of them into stock and movements. Nothing here
//! does I/O.

pub mod attributes;
pub mod binding;
pub mod closing;
pub mod correction;
pub mod entry;
pub mod event;
pub mod fields;
pub mod movement;
pub mod rules;

pub use attributes::Attributes;
pub use binding::{DecodeCode, DecodeError, Transport};
pub use closing::{Closing, Halves, read_closing};
pub use correction::{CorrectionDetails, CorrectionReason};
pub use entry::{EventKind, Quantity};
pub use event::{ADJUSTMENT_TYPE, EVENT_TIME_MILLIS, EventContent, MovementEvent};
pub use fields::{FieldError, ParseError};
pub use movement::{MovementClosing, MovementState, MovementStatus, MovementView, Side};
pub use rules::{
    Differs, LedgerState, Outcome, PriorEvent, Recorded, RejectReason, Verdict, apply_batch,
};
