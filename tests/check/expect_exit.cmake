# Runs TOOL --model register FILE and fails unless it exits with EXPECTED.
execute_process(COMMAND ${TOOL} --model register --html ${FILE}.html ${FILE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(REMOVE ${FILE}.html)
if(NOT rc EQUAL EXPECTED)
  message(FATAL_ERROR "tern-check exited ${rc}, expected ${EXPECTED}\n${out}${err}")
endif()
