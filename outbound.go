package main

// outbound.go: rules every outbound HTTP client follows: what survives a redirect,
// and how a configured URL is shown.

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
)

// withRedirectPolicy returns a copy of c (nil: http.DefaultClient) that follows
// redirects by checkRedirect, then by c's own policy if it has one. Every outbound
// client that sends configured credentials goes through it: Go itself strips only
// Authorization and Cookie on a host change, not X-Api-Key and the like.
func withRedirectPolicy(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cc := *c
	own := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkRedirect(req, via); err != nil || own == nil {
			return err
		}
		return own(req, via)
	}
	return &cc
}

// redactURL is s with the password of its userinfo replaced (url.URL.Redacted), for
// every message, event and log line that names a configured URL: a base_url may carry
// credentials. A URL without a password is returned as is; a string that does not
// parse loses everything between "://" and "@".
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		if _, has := u.User.Password(); !has {
			return s
		}
		return u.Redacted()
	}
	return urlUserinfo.ReplaceAllString(s, "://xxxxx@")
}

var urlUserinfo = regexp.MustCompile(`://[^/?#]*@`)

// redirectKeepHeaders are the only request headers that survive a redirect to another
// origin: none of them can carry a credential.
var redirectKeepHeaders = map[string]bool{"Accept": true, "Accept-Encoding": true, "Content-Type": true, "User-Agent": true}

// checkRedirect follows at most 10 redirects and, when one leaves the first request's
// scheme and host, drops every header but redirectKeepHeaders: configured headers
// (API keys, MCP remote headers) are meant for the host they were configured for.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
		for k := range req.Header {
			if !redirectKeepHeaders[k] {
				delete(req.Header, k)
			}
		}
	}
	return nil
}
