//! The gateway's route table: every public route is added through [`Served`], which keeps the
//! method and path of each, so the list the OpenAPI document is checked against is the router's
//! own and cannot drift from it.

use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;
use http::Method;

/// One public route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) method: Method,
    /// As the router matches it (`{param}`, `{*rest}`).
    pub(crate) path: &'static str,
}

/// A router and the routes it serves.
pub(crate) struct Served<S> {
    router: Router<S>,
    routes: Vec<Route>,
}

impl<S: Clone + Send + Sync + 'static> Served<S> {
    pub(crate) fn new() -> Self {
        Served {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    pub(crate) fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::GET, path, routing::get(handler))
    }

    pub(crate) fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::POST, path, routing::post(handler))
    }

    pub(crate) fn delete<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::DELETE, path, routing::delete(handler))
    }

    /// axum merges a second method on a path into the path's method router.
    fn add(mut self, method: Method, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.routes.push(Route { method, path });
        self.router = self.router.route(path, handler);
        self
    }

    /// `other`'s routes beside these.
    pub(crate) fn merge(mut self, other: Served<S>) -> Self {
        self.routes.extend(other.routes);
        self.router = self.router.merge(other.router);
        self
    }

    /// A route layer (shedding, admission) over the routes added so far.
    pub(crate) fn with_layer(mut self, layer: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = layer(self.router);
        self
    }

    /// The router, for what cannot be a documented route (a refusal, the state, outer layers).
    pub(crate) fn into_parts(self) -> (Router<S>, Vec<Route>) {
        (self.router, self.routes)
    }
}
