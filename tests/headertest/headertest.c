/* headertest.c -- the public header alone compiles as pedantic C99. */
#include <taskspan/taskspan.h>

int headertest_c(void);
int headertest_c(void)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan_event e = TASKSPAN_EVENT_INIT;
    taskspan_attr a = taskspan_attr_int("n", 1);
    return o.version + e.version + (int)a.value.i;
}
