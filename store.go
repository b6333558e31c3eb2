package main

import (
	_ "modernc.org/sqlite" // the only dependency: pure-Go SQLite driver "sqlite"
)
