package db

import "errors"

// errKeyValue is why a libpq key=value string does not parse. It never
// quotes the string, which may hold a password.
var errKeyValue = errors.New("db: malformed key=value connection string")

// kvPair is one "keyword = value" of a libpq connection string: the
// keyword, and where its value is in the string, quotes included.
type kvPair struct {
	key        string
	start, end int
}

// parseKV splits s as libpq reads a keyword/value connection string
// (PostgreSQL docs 34.1.1.1, "Keyword/Value Connection Strings"): pairs
// separated by white space, white space allowed around '=', a value bare
// or in single quotes, a backslash escaping the next character in either.
// pgx's parser (pgconn parseKeywordValueSettings) reads it the same way.
func parseKV(s string) ([]kvPair, error) {
	var pairs []kvPair
	for i := skipSpace(s, 0); i < len(s); {
		key, start, ok := kvKey(s, i)
		if !ok {
			return nil, errKeyValue
		}
		end, ok := kvValue(s, start)
		if !ok {
			return nil, errKeyValue
		}
		pairs = append(pairs, kvPair{key: key, start: start, end: end})
		i = skipSpace(s, end)
	}
	return pairs, nil
}

// kvKey reads the keyword at s[i:] and the '=' after it; start is where
// the value begins, past any white space.
func kvKey(s string, i int) (key string, start int, ok bool) {
	j := i
	for j < len(s) && !isSpace(s[j]) && s[j] != '=' {
		j++
	}
	key, j = s[i:j], skipSpace(s, j)
	if key == "" || j == len(s) || s[j] != '=' {
		return "", 0, false
	}
	return key, skipSpace(s, j+1), true
}

// kvValue returns where the value at s[i:] ends: after its closing quote,
// or at the first unescaped white space. ok is false for an unterminated
// quoted value, which then runs to the end of s.
func kvValue(s string, i int) (end int, ok bool) {
	quoted := i < len(s) && s[i] == '\''
	j := i
	if quoted {
		j++
	}
	for ; j < len(s); j++ {
		switch {
		case s[j] == '\\':
			j++ // a trailing backslash is dropped, as libpq does
		case quoted && s[j] == '\'':
			return j + 1, true
		case !quoted && isSpace(s[j]):
			return j, true
		}
	}
	return len(s), !quoted
}

// isSpace is C's isspace in the "C" locale, which libpq uses.
func isSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}
