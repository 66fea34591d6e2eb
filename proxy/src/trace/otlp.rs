//! Spans in the OTLP/HTTP JSON encoding: an `ExportTraceServiceRequest` as protobuf's
//! JSON mapping writes it (ids in lower-case hex, 64-bit integers as strings, enums as
//! numbers), which Jaeger, Tempo and the OpenTelemetry Collector take at `/v1/traces`.

use std::sync::Arc;

use serde_json::{Value, json};

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
pub(crate) fn encode(source: &Source, own: Option<&str>, records: &[Arc<Record>]) -> Vec<u8> {
    let mut resource = vec![string("service.name", &source.service_name)];
    if let Some(own) = own {
        resource.push(string("outrigger.identity", own));
    }
    let spans: Vec<Value> = records.iter().map(|r| span(r)).collect();
    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": resource},
            "scopeSpans": [{
                "scope": {"name": "outrigger-proxy", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&body).expect("a JSON value always serializes")
}

fn span(record: &Record) -> Value {
    let mut attributes = vec![
        string("outrigger.direction", record.side.as_str()),
        string("http.request.method", record.method.as_str()),
        string("url.path", &record.path),
        int("http.response.status_code", u64::from(record.status)),
        string("outrigger.request_id", &record.request_id),
    ];
    let optional = [
        ("outrigger.service", record.service.as_deref()),
        ("outrigger.route", record.route.as_deref()),
        ("outrigger.peer_identity", record.peer.as_deref()),
        ("outrigger.error", record.error),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            attributes.push(string(key, value));
        }
    }
    if let Some(retries) = record.retries {
        attributes.push(int("outrigger.retries", u64::from(retries)));
    }
    let name = match record.service.as_deref() {
        Some(service) => format!("{} {service}", record.method),
        None => record.method.to_string(),
    };
    let mut span = json!({
        "traceId": hex(&record.context.trace_id),
        "spanId": hex(&record.context.span_id),
        "name": name,
        "kind": match record.side {
            Side::Inbound => SPAN_KIND_SERVER,
            Side::Outbound => SPAN_KIND_CLIENT,
        },
        "startTimeUnixNano": record.start_unix_nanos.to_string(),
        "endTimeUnixNano": record.end_unix_nanos().to_string(),
        "attributes": attributes,
    });
    if let Some(parent) = record.parent {
        span["parentSpanId"] = Value::String(hex(&parent));
    }
    if record.failed() {
        let message = record
            .error
            .map_or_else(|| format!("HTTP {}", record.status), str::to_string);
        span["status"] = json!({"code": STATUS_CODE_ERROR, "message": message});
    }
    span
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// An `int64` attribute: a string in protobuf's JSON mapping.
fn int(key: &str, value: u64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

#[cfg(test)]
mod tests {
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
