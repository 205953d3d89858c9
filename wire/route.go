package wire

import (
	"fmt"
	"net/http"
	"strings"
)

// Route identifies one of the protocol's routes.
type Route int

// The routes. RouteUnknown is the zero value.
const (
	RouteUnknown Route = iota
	RouteListen        // POST PathListen + name
	RouteDial          // POST PathDial + name
	RouteAccept        // POST PathAccept + token
	RoutePark          // POST PathPark + name
)

// String returns the route's short name, as used in logs and metrics.
func (r Route) String() string {
	switch r {
	case RouteListen:
		return "listen"
	case RouteDial:
		return "dial"
	case RouteAccept:
		return "accept"
	case RoutePark:
		return "park"
	}
	return "unknown"
}

// RouteError is a request that does not fit a route. Status is the HTTP
// status the relay answers it with.
type RouteError struct {
	Status int
	Reason string
}

// Error returns "wire: STATUS REASON".
func (e *RouteError) Error() string { return fmt.Sprintf("wire: %d %s", e.Status, e.Reason) }

// ParseRoute maps a request's method and URL path onto a route and its one
// argument (the name, or the token's text). It checks the argument's form:
// names with CheckName, tokens by length and alphabet only (ParseToken does
// the rest). A path that matches no route is 404; a wrong method is 405; a
// bad argument is 400.
func ParseRoute(method, path string) (Route, string, error) {
	var route Route
	var arg string
	switch {
	case strings.HasPrefix(path, PathListen):
		route, arg = RouteListen, path[len(PathListen):]
	case strings.HasPrefix(path, PathDial):
		route, arg = RouteDial, path[len(PathDial):]
	case strings.HasPrefix(path, PathAccept):
		route, arg = RouteAccept, path[len(PathAccept):]
	case strings.HasPrefix(path, PathPark):
		route, arg = RoutePark, path[len(PathPark):]
	default:
		return RouteUnknown, "", &RouteError{http.StatusNotFound, "no such route"}
	}
	if method != http.MethodPost {
		return route, "", &RouteError{http.StatusMethodNotAllowed, "method not allowed"}
	}
	if route == RouteAccept {
		if _, err := ParseToken(arg); err != nil {
			return route, "", &RouteError{http.StatusBadRequest, "malformed token"}
		}
		return route, arg, nil
	}
	if err := CheckName(arg); err != nil {
		return route, "", &RouteError{http.StatusBadRequest, "invalid name"}
	}
	return route, arg, nil
}
