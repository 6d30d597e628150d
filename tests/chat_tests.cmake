# Chat-template interpreter: unit tests and the byte-for-byte comparison with @huggingface/jinja.
target_sources(celer_tests PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/test_jinja.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_jinja_reference.cpp
)
