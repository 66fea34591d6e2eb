//! Spans in the OTLP/HTTP JSON encoding: an `ExportTraceServiceRequest` as protobuf's
//! JSON mapping writes it (ids in lower-case hex, 64-bit integers as strings, enums as
//! numbers), which Jaeger, Tempo and the OpenTelemetry Collector take at `/v1/traces`.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::context::hex;
use super::record::{Record, Side};

/// `Span.SpanKind`.
const SPAN_KIND_SERVER: u8 = 2;
const SPAN_KIND_CLIENT: u8 = 3;
/// `Status.StatusCode`: unset (the default, so never written) and error.
const STATUS_CODE_ERROR: u8 = 2;

/// Who made the spans: OTLP's resource and scope.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// `service.name`: the service this proxy serves (its app's), so that a trace view
    /// shows the mesh hops under the services they belong to.
    pub service_name: String,
}

/// The request body for one batch; `own` is this proxy's identity, when it has one.
/// Written straight from the records through borrowing types: a tree of JSON values
/// cost several times as many instructions per span, on the proxy's one worker.
pub(crate) fn encode(source: &Source, own: Option<&str>, records: &[Arc<Record>]) -> Vec<u8> {
    let mut resource = vec![KeyValue::string("service.name", &source.service_name)];
    if let Some(own) = own {
        resource.push(KeyValue::string("outrigger.identity", own));
    }
    let request = ExportRequest {
        resource_spans: [ResourceSpans {
            resource: Resource {
                attributes: resource,
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "outrigger-proxy",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: records.iter().map(|r| Span::of(r)).collect(),
            }],
        }],
    };
    serde_json::to_vec(&request).expect("these types always serialize")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Resource<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    trace_id: Hex<'a>,
    span_id: Hex<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<Hex<'a>>,
    name: Shown<SpanName<'a>>,
    kind: u8,
    start_time_unix_nano: Shown<u64>,
    end_time_unix_nano: Shown<u64>,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
}

impl<'a> Span<'a> {
    fn of(record: &'a Record) -> Span<'a> {
        let mut attributes = vec![
            KeyValue::string("outrigger.direction", record.side.as_str()),
            KeyValue::string("http.request.method", record.method.as_str()),
            KeyValue::string("url.path", &record.path),
            KeyValue::int("http.response.status_code", u64::from(record.status)),
            KeyValue::string("outrigger.request_id", &record.request_id),
        ];
        let optional = [
            ("outrigger.service", record.service.as_deref()),
            ("outrigger.route", record.route.as_deref()),
            ("outrigger.peer_identity", record.peer.as_deref()),
            ("outrigger.error", record.error),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(KeyValue::string(key, value));
            }
        }
        if let Some(retries) = record.retries {
            attributes.push(KeyValue::int("outrigger.retries", u64::from(retries)));
        }
        Span {
            trace_id: Hex(&record.context.trace_id),
            span_id: Hex(&record.context.span_id),
            parent_span_id: record.parent.as_ref().map(|p| Hex(p)),
            name: Shown(SpanName(record)),
            kind: match record.side {
                Side::Inbound => SPAN_KIND_SERVER,
                Side::Outbound => SPAN_KIND_CLIENT,
            },
            start_time_unix_nano: Shown(record.start_unix_nanos),
            end_time_unix_nano: Shown(record.end_unix_nanos()),
            attributes,
            status: record.failed().then_some(Status {
                code: STATUS_CODE_ERROR,
                message: Shown(StatusMessage(record)),
            }),
        }
    }
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'static str,
    value: AnyValue<'a>,
}

impl<'a> KeyValue<'a> {
    fn string(key: &'static str, value: &'a str) -> Self {
        KeyValue {
            key,
            value: AnyValue::String(value),
        }
    }

    fn int(key: &'static str, value: u64) -> Self {
        KeyValue {
            key,
            value: AnyValue::Int(Shown(value)),
        }
    }
}

/// `AnyValue`: `{"stringValue": ...}` or `{"intValue": "..."}` (an int64 is a string in
/// protobuf's JSON mapping).
#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    String(&'a str),
    #[serde(rename = "intValue")]
    Int(Shown<u64>),
}

#[derive(Serialize)]
struct Status<'a> {
    code: u8,
    message: Shown<StatusMessage<'a>>,
}

/// Lower-case hex of an id.
struct Hex<'a>(&'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(self.0))
    }
}

/// A JSON string of anything `Display`s, written without an intermediate `String`.
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// `GET payments.shop`: the method and the service (the method alone when unknown).
struct SpanName<'a>(&'a Record);

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.service.as_deref() {
            Some(service) => write!(f, "{} {service}", self.0.method),
            None => write!(f, "{}", self.0.method),
        }
    }
}

/// The mesh error code, else `HTTP <status>`.
struct StatusMessage<'a>(&'a Record);

impl fmt::Display for StatusMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.error {
            Some(code) => f.write_str(code),
            None => write!(f, "HTTP {}", self.0.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::trace::record::sample;

    fn attribute<'a>(attributes: &'a Value, key: &str) -> &'a Value {
        attributes
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn encodes_an_export_request() {
        let source = Source {
            service_name: "orders".into(),
        };
        let mut ok = sample();
        ok.status = 200;
        ok.error = None;
        ok.parent = None;
        ok.side = Side::Inbound;
        ok.retries = None;
        let records = [Arc::new(sample()), Arc::new(ok)];
        let body = encode(
            &source,
            Some("spiffe://cluster.local/ns/shop/sa/orders"),
            &records,
        );
        let json: Value = serde_json::from_slice(&body).unwrap();
        let resource = &json["resourceSpans"][0]["resource"]["attributes"];
        assert_eq!(attribute(resource, "service.name")["stringValue"], "orders");
        assert_eq!(
            attribute(resource, "outrigger.identity")["stringValue"],
            "spiffe://cluster.local/ns/shop/sa/orders"
        );
        let scope = &json["resourceSpans"][0]["scopeSpans"][0];
        assert_eq!(scope["scope"]["name"], "outrigger-proxy");
        let spans = scope["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);

        let failed = &spans[0];
        assert_eq!(failed["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(failed["spanId"], "00f067aa0ba902b7");
        assert_eq!(failed["parentSpanId"], "0102030405060708");
        assert_eq!(failed["kind"], 3, "outbound is a CLIENT span");
        assert_eq!(failed["name"], "POST payments.shop");
        assert_eq!(failed["startTimeUnixNano"], "1767225599999999999");
        assert_eq!(failed["endTimeUnixNano"], "1767225600001233999");
        assert_eq!(failed["status"], json!({"code": 2, "message": "timeout"}));
        let attributes = &failed["attributes"];
        assert_eq!(
            attribute(attributes, "http.response.status_code")["intValue"],
            "504"
        );
        assert_eq!(attribute(attributes, "outrigger.retries")["intValue"], "2");
        assert_eq!(
            attribute(attributes, "outrigger.route")["stringValue"],
            "charge"
        );
        assert_eq!(
            attribute(attributes, "outrigger.error")["stringValue"],
            "timeout"
        );
        assert_eq!(
            attribute(attributes, "outrigger.peer_identity")["stringValue"],
            "spiffe://cluster.local/ns/shop/sa/payments"
        );

        let served = &spans[1];
        assert_eq!(served["kind"], 2, "inbound is a SERVER span");
        assert_eq!(
            served.get("parentSpanId"),
            None,
            "a root span has no parent"
        );
        assert_eq!(served.get("status"), None, "unset status is not written");
        assert_eq!(
            attribute(&served["attributes"], "outrigger.retries"),
            &Value::Null
        );
    }
}
