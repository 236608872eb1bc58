//! Rate limits, charged after the token and the route's requirements (a refused token is
//! never a 429).

use super::{Caller, Gate, Trace};

use crate::clock;
use crate::config::routes::Route;
use crate::ratelimit::{Subject, Verdict};
use crate::rejection::Rejection;
use crate::request::{Headroom, Request};

impl Gate {
    /// Charges the rate-limit rules that match (all or nothing); the rule that refused, counted.
    pub(super) async fn rate_limit(
        &self,
        req: &Request,
        route: Option<&Route>,
        caller: Option<&Caller<'_>>,
        trace: &mut Trace<'_>,
    ) -> Result<Option<Headroom>, Rejection> {
        if self.limiter.is_empty() {
            return Ok(None);
        }
        let subject = Subject {
            req,
            route: route.map(|r| r.name.as_str()),
            provider: caller.map(|c| c.provider.config.name.as_str()),
            claims: caller.map(|c| &c.verified.claims),
        };
        let checked = self.limiter.check(&subject, clock::now().instant).await;
        if checked.store_failed {
            self.limiter.metrics().store_error();
        }
        match (checked.verdict, checked.refused_by) {
            (Verdict::Unlimited, _) => {
                trace.step(|| "no rate-limit rule matches".into(), Ok(()));
                Ok(None)
            }
            (Verdict::Allowed(h), _) => {
                trace.step(
                    || format!("within rate limits (tightest: {}, {} left)", h.rule, h.remaining),
                    Ok(()),
                );
                Ok(Some(h))
            }
            (Verdict::Limited(exceeded), rule) => {
                if let Some(rule) = rule {
                    self.limiter.metrics().refused_by(rule);
                }
                let r = Rejection::RateLimited(Box::new(exceeded));
                trace.step(|| "within rate limits".into(), Err(&r));
                Err(r)
            }
        }
    }
}
