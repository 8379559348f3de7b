;;; emacs_session.el --- drive foretell through eglot in batch Emacs, for tests/test_emacs.py  -*- lexical-binding: t; -*-
;; Loads editors/emacs/foretell.el as a user would, opens a Markdown file, connects, asks for
;; completion through eglot's completion-at-point function, accepts the first item as a completion
;; UI does, reads hover and waits for flymake diagnostics.  Writes what it saw as JSON to $OUT.

(require 'json)
(add-to-list 'load-path (getenv "FORETELL_EMACS_DIR"))
(require 'foretell)
(require 'markdown-mode)
(setq foretell-command (split-string (getenv "FORETELL_COMMAND") "\t"))
(setq foretell-settings (json-parse-string (getenv "FORETELL_SETTINGS") :object-type 'plist
                                           :false-object :json-false))
(setq eglot-send-changes-idle-time 0.05)
(defvar result nil)

(defun wait-until (what predicate &optional seconds)
  (let ((deadline (+ (float-time) (or seconds 30))))
    (while (not (funcall predicate))
      (when (> (float-time) deadline) (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.05))))

(defun note (key value) (push (cons key value) result))

(find-file (getenv "FORETELL_FILE"))
(note 'major_mode (symbol-name major-mode))
(apply #'eglot (eglot--guess-contact))
(wait-until "the server" (lambda () (and (eglot-current-server) eglot--managed-mode)))
(note 'language_id (eglot--language-id (eglot-current-server)))

;; Completion after "The cat sat on the ", sorted as completion UIs sort eglot's items.
(goto-char (point-max))
(insert "The cat sat on the ")
(let* ((capf (eglot-completion-at-point))
       (table (nth 2 capf))
       (sort (completion-metadata-get (completion-metadata "" table nil) 'display-sort-function))
       (words (funcall sort (all-completions "" table))))
  (note 'completions (vconcat (mapcar #'substring-no-properties words)))
  ;; Accept the first one as company/corfu do: insert it, then eglot's exit function.
  (let ((start (nth 0 capf)) (end (nth 1 capf)) (word (car words)))
    (completion--replace start end word)
    (funcall (plist-get (nthcdr 3 capf) :exit-function) word 'finished)))
(note 'line_after_accept (buffer-substring-no-properties (line-beginning-position) (line-end-position)))

;; A second sentence with a surprising word: its diagnostic, then hover over it.  (The hover
;; comes second: Emacs 28's jsonrpc lost a notification that arrived in one read with the
;; reply to a synchronous request, about one run in five on a busy machine; eldoc's own
;; hovers are asynchronous.)
(insert ". The cat sat on the zebra.")
(eglot--signal-textDocument/didChange)
(defun diagnosed-text (d)
  (buffer-substring-no-properties (flymake-diagnostic-beg d) (flymake-diagnostic-end d)))
(wait-until "a diagnostic on the new sentence"
            (lambda () (member "zebra" (mapcar #'diagnosed-text (flymake-diagnostics)))))
(search-backward "zebra")
(forward-char 2)
(let ((hover (jsonrpc-request (eglot-current-server) :textDocument/hover
                              (eglot--TextDocumentPositionParams))))
  (note 'hover (plist-get (plist-get hover :contents) :value)))
(note 'diagnostics
      (vconcat (mapcar (lambda (d)
                         (list (cons 'text (diagnosed-text d))
                               (cons 'message (flymake-diagnostic-text d))))
                       (flymake-diagnostics))))
(eglot-shutdown (eglot-current-server))
(with-temp-file (getenv "OUT") (insert (json-encode result)))
