cmake_minimum_required(VERSION 3.25)
# The agent must load nothing but libc (and the dynamic loader, which is mapped
# anyway as the program interpreter) at start (docs/quality.md memory bar): the C++
# runtime, protobuf, Mbed TLS and libm-free code are linked in, and the optional
# system libraries (libsystemd, libpcsclite, libvirt) are opened at run time only
# when present. A new NEEDED entry maps a whole library on every thin client.
# Usage: cmake -DAGENT=path/to/deskpulse-agent -P agent_dependencies.cmake
execute_process(COMMAND readelf -d ${AGENT} OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${AGENT} failed (${rc})")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[([^]]+)\\]" entries "${dynamic}")
set(needed)
foreach(entry ${entries})
  string(REGEX REPLACE ".*\\[([^]]+)\\]" "\\1" lib "${entry}")
  list(APPEND needed ${lib})
endforeach()
set(extra ${needed})
list(REMOVE_ITEM extra libc.so.6 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1)
if(extra OR NOT "libc.so.6" IN_LIST needed)
  message(FATAL_ERROR "deskpulse-agent needs [${needed}]; only libc.so.6 and the loader are allowed")
endif()
message(STATUS "deskpulse-agent needs only ${needed}")
