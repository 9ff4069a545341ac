#!/bin/sh
# Regenerates the spoken warning prompts. Needs espeak-ng and sox.
# Output: 8 kHz mono G.711 mu-law WAV (8 kB per second, so each prompt stays under ~100 kB).
# The engine decodes each file once at start and pre-encodes it into PCMU and PCMA frames.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() { # name voice text
    espeak-ng -v "$2" -s 172 -g 4 -w "$tmp/$1.raw.wav" "$3"
    # -R: repeatable dither, so the committed files only change when a text changes.
    # Rate first (sox filters before decimating), then a fixed level so every prompt sounds alike.
    sox -R "$tmp/$1.raw.wav" -r 8000 -c 1 -e u-law -b 8 "$1.wav" silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
}

say en en-us "Caution: this call is suspected to be a scam. Microsoft and Amazon never call you unsolicited. Never give remote access or payment details."
say en-tech-support en-us "Caution: this caller claims to be tech support and is probably a scammer. Microsoft and Amazon never call you unsolicited. Never give remote access or payment details."
say de de "Achtung: Dieser Anruf ist vermutlich ein Betrugsversuch. Microsoft und Amazon rufen Sie nie unaufgefordert an. Geben Sie niemals Fernzugriff oder Zahlungsdaten heraus."
say de-tech-support de "Achtung: Dieser angebliche technische Support ist vermutlich ein Betrüger. Microsoft und Amazon rufen Sie nie unaufgefordert an. Geben Sie niemals Fernzugriff oder Zahlungsdaten heraus."
say es es "Atención: esta llamada es sospechosa de ser una estafa. Microsoft y Amazon nunca le llaman sin que usted lo pida. Nunca dé acceso remoto ni datos de pago."
say es-tech-support es "Atención: este supuesto soporte técnico es probablemente una estafa. Microsoft y Amazon nunca le llaman sin que usted lo pida. Nunca dé acceso remoto ni datos de pago."
ls -l ./*.wav
