# Chat templates: a Jinja-subset interpreter (src/chat/jinja.h).
target_sources(celer_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/jinja.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_js.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_preprocess.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_lexer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_parser.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_parse_expr.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_value.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_eval.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_filters.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_methods.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_globals.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja_access.cpp
)
