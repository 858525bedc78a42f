"""Content: parse and validate entries, stories and issues; the calendar; queue and assembly."""
