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

# Callback protection (src/app/callback.rs): heard by a protected subscriber who dials a number
# listed as a scam callback number, as early media before anything rings. The confirm prompt
# names the digit of callback.confirm_digit (1 by default): change both together.
say en-callback-warn en-us "Caution: the number you are calling has been reported as a scam. Microsoft and Amazon never ask you to call them about a virus or a refund. Your call will now be connected."
say en-callback-confirm en-us "Caution: the number you are calling has been reported as a scam. Microsoft and Amazon never ask you to call them about a virus or a refund. To continue anyway, press 1."
say en-callback-block en-us "The number you are calling has been reported as a scam and cannot be reached. Microsoft and Amazon never ask you to call them about a virus or a refund."
say en-callback-redirect en-us "The number you are calling has been reported as a scam. You are being connected to a safe advice line instead."
say de-callback-warn de "Achtung: Die gewählte Nummer wurde als Betrug gemeldet. Microsoft und Amazon bitten Sie nie, sie wegen eines Virus oder einer Erstattung anzurufen. Ihr Anruf wird jetzt verbunden."
say de-callback-confirm de "Achtung: Die gewählte Nummer wurde als Betrug gemeldet. Microsoft und Amazon bitten Sie nie, sie wegen eines Virus oder einer Erstattung anzurufen. Trotzdem weiter? Drücken Sie die 1."
say de-callback-block de "Die gewählte Nummer wurde als Betrug gemeldet und ist nicht erreichbar. Microsoft und Amazon bitten Sie nie, sie wegen eines Virus oder einer Erstattung anzurufen."
say de-callback-redirect de "Die gewählte Nummer wurde als Betrug gemeldet. Sie werden stattdessen mit einer sicheren Beratungsstelle verbunden."
say es-callback-warn es "Atención: el número al que llama ha sido denunciado como estafa. Microsoft y Amazon nunca le piden que les llame por un virus o un reembolso. Su llamada se conectará ahora."
say es-callback-confirm es "Atención: el número al que llama ha sido denunciado como estafa. Microsoft y Amazon nunca le piden que les llame por un virus o un reembolso. Para continuar de todos modos, pulse 1."
say es-callback-block es "El número al que llama ha sido denunciado como estafa y no está disponible. Microsoft y Amazon nunca le piden que les llame por un virus o un reembolso."
say es-callback-redirect es "El número al que llama ha sido denunciado como estafa. Le ponemos en contacto con una línea de ayuda segura."

# The challenge (src/app/challenge.rs): heard by a suspect caller before the call rings, as
# early media; the call goes on only once the caller presses the digit of challenge.digit (5 by
# default): change both together.
say en-challenge-press en-us "This call is being screened. To be connected, press 5."
say de-challenge-press de "Dieser Anruf wird geprüft. Um verbunden zu werden, drücken Sie die 5."
say es-challenge-press es "Esta llamada está siendo verificada. Para ser conectado, pulse 5."
ls -l ./*.wav
