# For the embedding scripts (store/embed_migrations.cmake, web/embed_web.cmake):
# writes `text` to `out` only when it differs from what is there, so that the
# sources including a generated header rebuild only when its input changed.
function(deskpulse_write_if_changed out text)
  if(EXISTS "${out}")
    file(READ "${out}" old)
    if(old STREQUAL text)
      return()
    endif()
  endif()
  file(WRITE "${out}" "${text}")
endfunction()
