//! Status-code counter slots, shared by every service: a service holds one counter per
//! slot (about 70), not one per possible code (500), and a slot is computed from the
//! code, not looked up in a map.

/// The status codes counted exactly (RFC 9110's, and a few in common use). Each service
/// has one counter per code here, plus one per class for any other code: about 70
/// counters, not 500.
pub(super) const KNOWN_STATUSES: [u16; 64] = [
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 499, 500, 501, 502, 503, 504,
    505, 506, 507, 508, 510, 511, 599,
];
/// Counters per service: the known codes, then one for each class 1xx..5xx.
pub(super) const STATUS_SLOTS: usize = KNOWN_STATUSES.len() + 5;

/// The counter slot of a status code (shared by every service: computed, not stored).
pub(super) fn status_slot(status: u16) -> Option<usize> {
    match KNOWN_STATUSES.binary_search(&status) {
        Ok(i) => Some(i),
        Err(_) => match status {
            100..=599 => Some(KNOWN_STATUSES.len() + usize::from(status / 100 - 1)),
            _ => None,
        },
    }
}

/// The `status_code` label of a slot: the code, or its class (`5xx`) for the others.
pub(super) fn slot_label(slot: usize) -> String {
    match KNOWN_STATUSES.get(slot) {
        Some(code) => code.to_string(),
        None => format!("{}xx", slot - KNOWN_STATUSES.len() + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_slots_are_exact_for_known_codes_and_by_class_for_others() {
        assert!(KNOWN_STATUSES.windows(2).all(|w| w[0] < w[1]), "sorted");
        for code in KNOWN_STATUSES {
            assert_eq!(slot_label(status_slot(code).unwrap()), code.to_string());
        }
        assert_eq!(slot_label(status_slot(299).unwrap()), "2xx");
        assert_eq!(slot_label(status_slot(555).unwrap()), "5xx");
        assert_eq!(status_slot(99), None);
        assert_eq!(status_slot(600), None);
    }
}
