;;; foretell.el --- Completion and surprisal from your own writing, through eglot  -*- lexical-binding: t; -*-

;; Tested in batch Emacs 28 with Debian's elpa-eglot 1.9; Emacs 29+ has eglot built in.
;;
;; (add-to-list 'load-path "/path/to/foretell/editors/emacs")
;; (require 'foretell)
;; (add-hook 'markdown-mode-hook #'eglot-ensure)   ; and text-mode-hook, rst-mode-hook, org-mode-hook
;;
;; What you get: completion at point (M-TAB, or as you type with company or corfu), hover in
;; eldoc (the word's bits, rank and the words the model expected), surprising words as flymake
;; diagnostics.  eglot 1.9 has no semantic tokens, inlay hints or inline completion, so the
;; colours of other editors arrive here as diagnostics, which these settings turn on.

;;; Code:

(require 'eglot)

(defgroup foretell nil
  "Text prediction from your own writing."
  :group 'tools)

(defcustom foretell-command '("foretell" "serve")
  "How to start the language server."
  :type '(repeat string))

(defcustom foretell-modes
  '((markdown-mode :language-id "markdown") (gfm-mode :language-id "markdown")
    (rst-mode :language-id "rst") (org-mode :language-id "org") (text-mode :language-id "plaintext"))
  "Major modes served, each with the language id the server knows it by.
Most text modes derive from `text-mode', so it comes last: eglot takes the first that matches."
  :type 'sexp)

(defcustom foretell-settings
  '(:surprisal (:diagnostics t :threshold 12))
  "Settings sent under `foretell' in initializationOptions (see foretell's README).
t is true, :json-false is false."
  :type 'plist)

(defun foretell-contact (&optional _interactive)
  "The eglot contact: `foretell-command' with `foretell-settings' as initializationOptions."
  (append foretell-command (list :initializationOptions (list :foretell foretell-settings))))

(add-to-list 'eglot-server-programs (cons foretell-modes #'foretell-contact))

(provide 'foretell)
;;; foretell.el ends here
