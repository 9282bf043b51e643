// headertest.cpp -- the public header compiles as C++ (extern "C", no C-only
// constructs in its inline helpers or initialiser macros).
#include <taskspan/taskspan.h>

int headertest_cxx();
int headertest_cxx()
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan_event e = TASKSPAN_EVENT_INIT;
    taskspan_attr a = taskspan_attr_str("k", "v");
    return o.version + e.version + (a.type == TASKSPAN_ATTR_STRING ? 1 : 0);
}
