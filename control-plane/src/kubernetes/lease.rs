//! Which replica writes the CRDs' status: the holder of a `coordination.k8s.io/v1`
//! Lease (`outrigger/outrigger-control-plane-status`). Every replica runs the same
//! loop: take the Lease if nobody holds it or its holder stopped renewing it, renew it
//! while holding it, and step down when a renewal is refused or cannot be made in time.
//!
//! Two rules keep it correct without trusting clocks to agree:
//! - every write names the `resourceVersion` it read (a create has none to name), so
//!   when two replicas race, the API server lets one win and answers the other 409;
//! - a holder is judged gone by this replica's own clock: the Lease is expired when its
//!   `resourceVersion` has not changed for `leaseDurationSeconds` since this replica
//!   first saw it so; `renewTime` (another machine's clock) is written, never trusted.
//!
//! A holder steps down after [`LeaseConfig::renew_deadline`] without a successful
//! renewal, before the others can see the Lease expire, so two writers never overlap.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// The Lease and how this replica holds it.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name, written as `holderIdentity`.
    pub holder: String,
    /// `leaseDurationSeconds`: how long the others wait before taking an unrenewed Lease.
    pub duration: Duration,
    /// How often the holder renews; well under `renew_deadline`, so one failed renewal
    /// is survived.
    pub renew_every: Duration,
    /// A holder that has not renewed for this long steps down; under `duration`.
    pub renew_deadline: Duration,
    /// How often a replica that does not hold the Lease looks at it again.
    pub retry_every: Duration,
}

impl LeaseConfig {
    /// The timings Kubernetes' own controllers use: 15s, renewed every 2s, given up
    /// after 10s without a renewal, looked at every 2s by the others.
    pub fn new(namespace: &str, name: &str, holder: &str) -> Self {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            holder: holder.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The Lease's `resourceVersion` as last seen, and when (this replica's clock) it
    /// was first seen with that version.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// One round: creates, renews or takes over the Lease as it stands; true if this
    /// replica holds it afterwards. A 409 (someone else wrote first) is a plain false.
    pub async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            return self.write(None).await;
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, _)) if *seen == version => {}
            _ => self.observed = Some((version, now)),
        }
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder == self.config.holder {
            return self.write(Some(lease)).await;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.duration, Duration::from_secs);
        let unchanged_since = self.observed.as_ref().map_or(now, |(_, at)| *at);
        // An empty holder is a Lease released on purpose: free at once.
        if !holder.is_empty() && now.duration_since(unchanged_since) < duration {
            return Ok(false);
        }
        info!("the status Lease of {holder:?} was not renewed for {duration:?}: taking it over");
        self.write(Some(lease)).await
    }

    /// Gives the Lease up (on shutdown), so that another replica takes it at once
    /// instead of after `leaseDurationSeconds`; only if this replica still holds it.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.holder.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            // 409: written by someone else since: not ours to release any more.
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the Lease (`None`) or writes this replica in as its holder, naming the
    /// `resourceVersion` read.
    async fn write(&mut self, current: Option<Lease>) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let seconds = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX);
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.holder.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if spec.holder_identity.as_deref() != Some(self.config.holder.as_str()) {
                    spec.holder_identity = Some(self.config.holder.clone());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(now);
                // `lease` still carries the resourceVersion read: the optimistic lock.
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                self.observed = written
                    .metadata
                    .resource_version
                    .map(|v| (v, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How long a release at shutdown may take before the process goes on stopping.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the election until `stopping`, publishing on `leading` whether this replica
/// holds the Lease; then, if it holds it, releases it.
pub async fn run(
    mut elector: Elector,
    leading: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
) {
    elect(&mut elector, &leading, stopping).await;
    if leading.send_replace(false) {
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(())) => info!("released the status Lease"),
            Ok(Err(e)) => warn!("releasing the status Lease: {e}"),
            Err(_) => warn!("releasing the status Lease: no answer in {RELEASE_TIMEOUT:?}"),
        }
    }
}

async fn elect(
    elector: &mut Elector,
    leading: &watch::Sender<bool>,
    mut stopping: watch::Receiver<bool>,
) {
    let config = elector.config.clone();
    let mut last_renewal: Option<Instant> = None;
    loop {
        let attempt = tokio::select! {
            attempt = elector.attempt() => attempt,
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let was_leading = *leading.borrow();
        let now_leading = match attempt {
            Ok(true) => {
                last_renewal = Some(Instant::now());
                true
            }
            Ok(false) => false,
            Err(e) => {
                let held_until = last_renewal.map(|at| at + config.renew_deadline);
                let still = was_leading && held_until.is_some_and(|until| Instant::now() < until);
                warn!(
                    "the status Lease {}/{}: {e}{}",
                    config.namespace,
                    config.name,
                    if still { "; still holding it" } else { "" }
                );
                still
            }
        };
        if now_leading != was_leading {
            if now_leading {
                info!("holding the status Lease: this replica writes the CRDs' status");
            } else {
                info!("no longer holding the status Lease");
                last_renewal = None;
            }
            leading.send_replace(now_leading);
        }
        let wait = if now_leading {
            config.renew_every
        } else {
            config.retry_every
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}
