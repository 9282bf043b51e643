/*
 * ui_assets.h -- the web UI's static files (index.html and assets/...),
 * compiled into the binary at build time by embed_assets.cmake, so
 * `taskspan serve` needs no files on disk, no build tools at install time
 * and no CDN.
 *
 * Internal to the viewer: no API promise. The table is constant data, so
 * lookups are thread-safe and nothing is ever freed.
 */
#ifndef TASKSPAN_VIEWER_UI_ASSETS_H
#define TASKSPAN_VIEWER_UI_ASSETS_H

#include <stddef.h>

/* One embedded file. data holds len bytes (followed by a NUL that len does
 * not count); content_type is the value for the Content-Type header. */
typedef struct taskspan__ui_asset {
    const char *path;
    const char *content_type;
    const unsigned char *data;
    size_t len;
} taskspan__ui_asset;

/* The asset whose URL path is path ("/index.html", "/assets/app.js"), or
 * NULL if there is none (or path is NULL). Matching is exact: the caller
 * maps "/" to "/index.html" and strips any query string first. */
const taskspan__ui_asset *taskspan__ui_asset_find(const char *path);

#endif
