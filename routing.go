package main

// routing.go: rule-based model routing (CONFIG.md §5.2 `routing`). A model with
// routing rules is a router: each turn goes to the model of the rule whose example is
// most similar to the last user message, and to the router's own provider/model when
// no example shares a word with it. Similarity is TF-IDF over English words (lower
// case, stop words dropped, plurals and common suffixes folded), the kind of text
// match the reference's full-text index does.

import (
	"math"
	"strings"
	"unicode"
)

// route returns the model ref to use for ref on this conversation: ref itself unless
// it names a router, else the chosen rule's model (routed again, up to a few levels,
// when that is a router too).
func (f *agentFile) route(ref string, history []chatMessage) string {
	for range 4 {
		mc, ok := f.Models.get(ref)
		if !ok || len(mc.RoutingRules) == 0 {
			return ref
		}
		next := routeRules(mc.RoutingRules, lastUserText(history))
		if next == "" {
			return ref // modelSpec gives the router's own provider/model: the fallback
		}
		ref = next
	}
	return ref
}

// lastUserText is the text of the last user message.
func lastUserText(history []chatMessage) string {
	for i := len(history) - 1; i >= 0; i-- {
		if history[i].Role == "user" {
			text := history[i].Content
			for _, p := range history[i].MultiContent {
				if p.Type == "text" {
					text += " " + p.Text
				}
			}
			return text
		}
	}
	return ""
}

// routeRules scores every example against the query and returns the model of the
// best one; "" when nothing matches.
func routeRules(rules []routingRule, query string) string {
	q := routeTerms(query)
	if len(q) == 0 {
		return ""
	}
	type doc struct {
		rule  int
		terms map[string]int
		n     int
	}
	var docs []doc
	df := map[string]int{}
	for i, r := range rules {
		for _, ex := range r.Examples {
			d := doc{rule: i, terms: map[string]int{}}
			for _, t := range routeTerms(ex) {
				if d.terms[t] == 0 {
					df[t]++
				}
				d.terms[t]++
				d.n++
			}
			docs = append(docs, d)
		}
	}
	best, bestScore := -1, 0.0
	for _, d := range docs {
		score := 0.0
		for _, t := range q {
			if tf := d.terms[t]; tf > 0 {
				idf := 1 + math.Log(float64(len(docs))/float64(df[t]+1))
				score += math.Sqrt(float64(tf)) * idf * idf / math.Sqrt(float64(d.n))
			}
		}
		if score > bestScore {
			best, bestScore = d.rule, score
		}
	}
	if best < 0 {
		return ""
	}
	return rules[best].Model
}

// routeTerms splits text into lower-case word stems without English stop words.
func routeTerms(text string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	}) {
		w = strings.TrimSuffix(strings.Trim(w, "'"), "'s")
		if w == "" || routeStopWords[w] {
			continue
		}
		out = append(out, routeStem(w))
	}
	return out
}

// routeStem folds common English suffixes so "bugs", "debugging" and "debugged" meet
// "bug" and "debug".
func routeStem(w string) string {
	for _, suf := range []string{"ational", "ization", "fulness", "ousness", "iveness", "ations", "ation", "ments", "ment", "ings", "ing", "edly", "ies", "ied", "ed", "ly", "es", "s"} {
		if len(w) > len(suf)+2 && strings.HasSuffix(w, suf) {
			w = strings.TrimSuffix(w, suf)
			if suf == "ies" || suf == "ied" {
				w += "y"
			}
			break
		}
	}
	// debugg(ing) → debug: a doubled final consonant left by the suffix.
	if n := len(w); n > 3 && w[n-1] == w[n-2] && !strings.ContainsRune("aeiousl", rune(w[n-1])) {
		w = w[:n-1]
	}
	return w
}

// routeStopWords are the English stop words of the reference's analyzer (Lucene's list).
var routeStopWords = map[string]bool{
	"a": true, "an": true, "and": true, "are": true, "as": true, "at": true, "be": true, "but": true,
	"by": true, "for": true, "if": true, "in": true, "into": true, "is": true, "it": true, "no": true,
	"not": true, "of": true, "on": true, "or": true, "such": true, "that": true, "the": true,
	"their": true, "then": true, "there": true, "these": true, "they": true, "this": true, "to": true,
	"was": true, "will": true, "with": true,
}
