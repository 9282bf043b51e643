/*
 * cli_time.c -- how the commands show a time: UTC, ISO 8601, milliseconds,
 * so a table sorts as text and reads the same on every machine.
 */
#include "cmd.h"

#include <stdio.h>
#include <time.h>

void cli_format_time(char *out, size_t size, int64_t ns)
{
    struct tm tm;
    time_t secs = (time_t)(ns / 1000000000);
    if (ns <= 0 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, size, "-");
        return;
    }
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", day, (int)((ns / 1000000) % 1000));
}
