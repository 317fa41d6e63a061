//! The webhook's message contract as the OpenAPI document describes it.
//! The parser reads the JSON by hand (see `domain::event`) so that it can
//! name every broken field; these types only describe the contract, and
//! [`describe_extensions`] adds what the derive cannot express.

use crate::api::corrections::AdjustmentRequest;
use crate::domain::EVENT_TIME_MILLIS;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{OpenApi as Spec, RefOr};
use uuid::Uuid;

/// Declares a webhook message: the CloudEvents envelope every message
/// shares, with its own `type` and `data`, and the examples and words that
/// differ. The parser reads the JSON by hand (see `domain::event`) so that
/// it can name every broken field; these types only describe the contract.
macro_rules! message {
    ($(#[$($doc:tt)*])* $name:ident {
        type: $kind:ty, data: $data:ty,
        id: $id:tt, source: $source:tt, who: $who:tt, time: $time:tt $(,)?
    }) => {
        $(#[$($doc)*])*
        #[derive(Serialize, ToSchema)]
        #[allow(dead_code)]
        pub struct $name {
            /// Unique per message; re-sending the same event keeps it. Not blank,
            /// and without U+0000.
            #[schema(example = $id)]
            id: String,
            #[doc = $who]
            #[schema(example = $source)]
            source: String,
            #[schema(inline)]
            specversion: SpecVersion,
            #[schema(inline)]
            r#type: $kind,
            #[doc = $time]
            #[schema(example = 1737370800000i64)]
            time: Option<EventTime>,
            /// `application/json`, in any case, optionally with parameters.
            #[schema(
                pattern = r"^\s*[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn]\s*(;[\s\S]*)?$",
                example = "application/json"
            )]
            datacontenttype: Option<String>,
            data: $data,
        }
    };
}

message! {
    /// The webhook's message as documented. The parser reads the JSON by hand
    /// (see `domain::event`) so that it can name every broken field; this type
    /// only describes the contract.
    MovementMessage {
        type: MovementType,
        data: MovementData,
        id: "4f7c6a9e-0b7d-4f7e-8a35-0d5d3f5f2a11",
        source: "warehouse-7",
        who: " Who sent it, such as a warehouse system. Not blank, and without\n U+0000.",
        time: " Epoch milliseconds (integer) or an RFC 3339 timestamp.",
    }
}

message! {
    /// A correction as a CloudEvent: the envelope of a movement's message,
    /// with `data` holding the fields of `POST /api/v1/adjustments`.
    AdjustmentMessage {
        type: AdjustmentType,
        data: AdjustmentRequest,
        id: "9a0e6b1c-3f5d-4c2b-8e71-2d4f6a8b0c13",
        source: "scanner-12",
        who: " Who sent it, such as a handheld scanner. Not blank, and without U+0000.",
        time: " Epoch milliseconds (integer) or an RFC 3339 timestamp: when the correction was made (else when it was read).",
    }
}

/// What the webhook takes: a movement's half, or a correction.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum WebhookMessage {
    Movement(MovementMessage),
    Adjustment(AdjustmentMessage),
}

/// The correction type.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum AdjustmentType {
    #[serde(rename = "ru.retail.warehouses.adjustment")]
    Adjustment,
}

/// Not blank (some character that is not Unicode White_Space, which is
/// what the parser trims), and no U+0000 anywhere (PostgreSQL cannot store
/// it). The class is spelled out because regex engines disagree on `\s`.
const TEXT_PATTERN: &str = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";
/// No U+0000 anywhere.
const NO_NUL_PATTERN: &str = r"^[^\u0000]*$";

/// The CloudEvents version: only 1.0.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum SpecVersion {
    #[serde(rename = "1.0")]
    V1,
}

/// The one event type this service takes.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum MovementType {
    #[serde(rename = "ru.retail.warehouses.movement")]
    Movement,
}

/// Whether goods arrived at the warehouse or departed from it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum EventName {
    Arrival,
    Departure,
}

/// The CloudEvent `time` in either form the service accepts: epoch
/// milliseconds or an RFC 3339 timestamp, for the same span of years. The
/// schema is written by hand because the derive cannot bound a variant.
#[derive(Serialize)]
#[allow(dead_code)]
pub enum EventTime {}

impl utoipa::PartialSchema for EventTime {
    fn schema() -> RefOr<Schema> {
        let millis = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(*EVENT_TIME_MILLIS.start()))
            .maximum(Some(*EVENT_TIME_MILLIS.end()))
            .description(Some("Epoch milliseconds, for the years 0000 to 9999"));
        let timestamp = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An RFC 3339 timestamp"));
        OneOfBuilder::new()
            .item(millis)
            .item(timestamp)
            .description(Some(
                "Epoch milliseconds (integer) or an RFC 3339 timestamp",
            ))
            .into()
    }
}

impl ToSchema for EventTime {}

/// What happened: goods arrived at or departed from a warehouse.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MovementData {
    /// Shared by the departure and the arrival of one transfer.
    movement_id: Uuid,
    warehouse_id: Uuid,
    product_id: Uuid,
    #[schema(inline, example = "departure")]
    event: EventName,
    /// RFC 3339 with an offset; stored to the microsecond.
    #[schema(value_type = String, format = DateTime, example = "2025-01-20T10:00:00Z")]
    timestamp: String,
    /// 1 to 2147483647.
    #[schema(minimum = 1, maximum = 2147483647, example = 10)]
    quantity: i32,
}

/// Extension attributes: any other member of the message, kept in the
/// audit log as JSON, so no string in them, name or value, may hold U+0000.
pub fn describe_extensions(spec: &mut Spec) {
    let components = spec.components.get_or_insert_with(Default::default);
    let value_ref = || RefOr::Ref(Ref::from_schema_name("ExtensionValue"));
    let no_nul = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(NO_NUL_PATTERN))
            .build()
    };
    let value = OneOfBuilder::new()
        .description(Some("Any JSON value without U+0000 in its strings"))
        .item(no_nul())
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(ArrayBuilder::new().items(value_ref()))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(value_ref()))
                .property_names(Some(no_nul())),
        );
    components
        .schemas
        .insert("ExtensionValue".into(), Schema::OneOf(value.build()).into());
    for kind in ["MovementMessage", "AdjustmentMessage"] {
        if let Some(RefOr::T(Schema::Object(message))) = components.schemas.get_mut(kind) {
            message.additional_properties = Some(Box::new(value_ref().into()));
            message.property_names = Some(Box::new(Schema::Object(no_nul())));
            // The derive takes only a literal pattern; these are shared.
            for name in ["id", "source"] {
                if let Some(RefOr::T(Schema::Object(field))) = message.properties.get_mut(name) {
                    field.pattern = Some(TEXT_PATTERN.into());
                }
            }
        }
    }
}
