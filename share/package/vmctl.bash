# bash completion for vmctl(8): command names from `vmctl help`, VM names from `vmctl status`, files for paths.
# Installed as /usr/share/bash-completion/completions/vmctl.

_vmctl() {
	local cur prev words cword
	_init_completion || return
	local i cmd=
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-H) ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done
	if [[ $prev == -H ]]; then
		_known_hosts_real -a -- "$cur"
		return
	fi
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$(vmctl help 2>/dev/null | sed -n 's/^\t\([a-z][a-z]*\).*/\1/p') --json -v -H" -- "$cur"))
		return
	fi
	case $prev in
	-b|-d|-i|-r|-w|--initrd|load|create)
		_filedir
		return ;;
	esac
	case $cmd in
	log) COMPREPLY=($(compgen -W "brief verbose $(vmctl status 2>/dev/null | awk 'NR > 1 { print $NF }')" -- "$cur")) ;;
	create|load|receive|reload|reset|help) ;;
	*) COMPREPLY=($(compgen -W "$(vmctl status 2>/dev/null | awk 'NR > 1 { print $NF }')" -- "$cur")) ;;
	esac
}
complete -F _vmctl vmctl
