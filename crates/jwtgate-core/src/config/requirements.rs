//! Every set of requirements a config holds, from one function: what the verified-token cache
//! keeps of a token is derived from it (with [`crate::policy::claims_read`]), so a requirement
//! checked somewhere but missing here is the only way a cached check could decide differently
//! from the first — and the gate asserts against that in debug builds.

use super::Config;
use super::introspection::IntrospectionClient;
use super::routes::{Auth, Requirements};

impl Config {
    /// Every requirement a token may be checked against: each route's that requires a token,
    /// the admin API's (`admin.provider` + `admin.role`), and each introspection token client's.
    /// A new kind of requirement is added here.
    pub fn requirements(&self) -> Vec<Requirements> {
        let routes = self.routes.iter().filter_map(|r| match &r.auth {
            Auth::Required(r) => Some(r.clone()),
            Auth::Public | Auth::Optional => None,
        });
        let admin = self.admin.requirement();
        let clients = self
            .introspection
            .clients
            .iter()
            .filter_map(IntrospectionClient::requirement);
        routes.chain(admin).chain(clients).collect()
    }
}
