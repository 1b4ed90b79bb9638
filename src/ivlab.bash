# ivlab.bash: bash completion for ivlab. Commands, options and the image
# architectures come from ivlab's own help, so they follow the program;
# guest names from `ivlab xml` of the lab the command line names (-f), which
# resolves the default lab the way every command does.

# _ivlab_options ARGS...: the long and short options `ivlab ARGS --help`
# lists; those taking a value end in "=".
_ivlab_options()
{
	"${_ivlab_cmd:-ivlab}" "$@" --help 2>/dev/null |
		sed -n 's/^ \{1,\}\(-[a-zA-Z], \)\{0,1\}\(--[a-z][a-z0-9-]*\)\(=\{0,1\}\).*/\1\2\3/p' |
		sed 's/^\(-[a-zA-Z]\), \(.*\)/\1\n\2/'
}

_ivlab()
{
	local cur prev words cword
	_init_completion -n = || return

	local _ivlab_cmd=${words[0]}
	local -a global=()
	local i command= subcommand= word
	# The global options before the command (kept for the guest list: -f, -c).
	for ((i = 1; i < cword; i++)); do
		word=${words[i]}
		case $word in
		-c | --connect | -f | --lab)
			global+=("$word" "${words[i + 1]}")
			((i++))
			;;
		--connect=* | --lab=*)
			global+=("$word")
			;;
		-*) ;;
		*)
			command=$word
			break
			;;
		esac
	done
	local first=$((i + 1))

	if [[ -z $command ]]; then
		case $prev in
		-f | --lab)
			_filedir xml
			return
			;;
		-c | --connect)
			COMPREPLY=($(compgen -W 'qemu:///system qemu:///session' -- "$cur"))
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W '-c --connect -f --lab -v --verbose -q --quiet --version -h --help' -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$("$_ivlab_cmd" help 2>/dev/null |
				sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')" -- "$cur"))
		fi
		return
	fi

	local -a scope=("$command")
	if [[ $command == image ]]; then
		for ((i = first; i < cword; i++)); do
			case ${words[i]} in
			build | list | fetch)
				subcommand=${words[i]}
				break
				;;
			esac
		done
		if [[ -z $subcommand ]]; then
			COMPREPLY=($(compgen -W 'build list fetch' -- "$cur"))
			return
		fi
		scope+=("$subcommand")
	elif [[ $command == bench ]]; then
		# bench measures the running lab; bench boot has its own options.
		for ((i = first; i < cword; i++)); do
			[[ ${words[i]} == boot ]] && subcommand=boot && scope+=(boot) && break
		done
		if [[ -z $subcommand && $cur != -* ]] && ((cword == first)); then
			COMPREPLY=($(compgen -W 'boot' -- "$cur"))
			return
		fi
	fi

	# An option's value.
	local options
	options=$(_ivlab_options "${scope[@]}")
	if [[ $prev == -* ]] && grep -qx -e "$prev=" <<<"$options"; then
		case $prev in
		-a | --arch)
			COMPREPLY=($(compgen -W "$(_ivlab_options_arches)" -- "$cur"))
			;;
		--junit | --kernel | --kernel-build-dir | --socket | -s | --pidfile | -p | \
			--log-file | -l | --shm-dir)
			_filedir
			;;
		esac
		return
	fi
	if [[ $prev == -* ]] && [[ $prev != --*=* ]]; then
		# A short option taking a value: its long form is on the same help line.
		local long
		long=$("$_ivlab_cmd" "${scope[@]}" --help 2>/dev/null |
			sed -n "s/^ *$prev, \(--[a-z-]*\)=.*/\1/p")
		if [[ -n $long ]]; then
			case $long in
			--arch) COMPREPLY=($(compgen -W "$(_ivlab_options_arches)" -- "$cur")) ;;
			--socket | --pidfile | --log-file) _filedir ;;
			esac
			return
		fi
	fi

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(sed 's/=$//' <<<"$options")" -- "$cur"))
		return
	fi

	case $command in
	console | xml | exec)
		# console takes one guest; xml and exec several.
		if [[ $command == console ]]; then
			for ((i = first; i < cword; i++)); do
				[[ ${words[i]} != -* ]] && return
			done
		fi
		COMPREPLY=($(compgen -W "$("$_ivlab_cmd" "${global[@]}" xml 2>/dev/null |
			sed -n 's/.*<ivlab:lab .* guest="\([^"]*\)".*/\1/p')" -- "$cur"))
		;;
	help)
		COMPREPLY=($(compgen -W "$("$_ivlab_cmd" help 2>/dev/null |
			sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')" -- "$cur"))
		;;
	esac
}

# The architectures --arch accepts, as `ivlab image build --help` lists them.
_ivlab_options_arches()
{
	"${_ivlab_cmd:-ivlab}" image build --help 2>/dev/null |
		sed -n 's/.*--arch=ARCH *\(.*\) (default.*/\1/p' | sed 's/,/ /g; s/ or / /g'
}

complete -F _ivlab ivlab
